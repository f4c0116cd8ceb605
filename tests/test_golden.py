"""Golden chronologies of the hand-written example children (fixtures/examples/*.yml).

Each example's story is what a social worker would tell; `tests/golden/<id>.txt` is the
chronology the pipeline must make of it, one numbered entry per block, reviewed line by
line against the story. `STORY` below says, for each child, the key events the story
names, in order: the page must open on exactly those. After a deliberate change to the
rules or the shaping, rewrite the files with `python -m pytest tests/test_golden.py
--update-golden` and review the diff before committing it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pyarrow.dataset as ds
import pytest

from fixtures.examples import load_examples
from transforms.pages import MEMBER_COLUMNS, RunInfo, child_pages, load_templates, page_id
from transforms.rules import load_rules

GOLDEN = Path(__file__).with_name("golden")
AS_OF = "2026-03-31"
# A fixed run, so that a golden page changes only when what it shows changes.
RULES = load_rules()
GOLDEN_RUN = RunInfo(run_id="GOLDEN", generated_at=datetime(2026, 4, 1, 2, 0, tzinfo=UTC),
                     as_of=pd.Timestamp(AS_OF), rules_hash=RULES.digest, marks_new=False)

# The key events each story names, in the order it tells them.
STORY = {
    # A baby known through two contacts: nothing key but her birth.
    "EX0000001": ["Born"],
    # Disclosure, strategy discussion and S47, conference and plan, plan ended.
    "EX0000002": ["Born", "Case note", "Section 47 enquiry started",
                  "Child protection plan started", "Child protection plan ended"],
    # Police referral with a cut lip; into care; interim then full care order; the
    # unplanned ending; three missing episodes; the move to semi-independence; left care;
    # a care leaver not in touch.
    "EX0000003": ["Born", "Case note", "Became looked after", "Legal status changed",
                  "Placement ended unplanned", "Went missing", "Case note",
                  "Legal status changed", "Went missing", "Went missing", "Placement started",
                  "Ceased to be looked after", "Care leaver contact"],
    # Pre-birth referral, S47 and conference; born on a plan.
    "EX0000004": ["Section 47 enquiry started", "Initial child protection conference", "Born",
                  "Child protection plan started"],
}


@pytest.fixture(scope="module")
def examples_run(examples_output) -> tuple[pd.DataFrame, pd.DataFrame]:
    entries = ds.dataset(examples_output / "chronology", partitioning="hive").to_table()
    children = pd.read_parquet(examples_output / "children.parquet")
    return (entries.to_pandas().sort_values(["child_id", "seq"], ignore_index=True),
            children)


def _date(value: pd.Timestamp) -> str:
    return f"{value.day} {value.strftime('%b %Y')}"


def render(child: pd.Series, entries: pd.DataFrame) -> str:
    """A chronology as plain text: the header, then one block per entry."""
    born = _date(child["birth_date"]) if pd.notna(child["birth_date"]) else "not yet"
    lines = [f"{child['child_id']} {child['forename']} {child['surname']}, born {born}; "
             f"as of {_date(pd.Timestamp(AS_OF))}",
             f"status: {child['current_status']}; default view {child['default_entries']} of "
             f"{child['raw_rows']} source rows; key entries {child['key_entries']}", ""]
    for entry in entries.itertuples():
        when = _date(entry.event_date)
        if pd.notna(entry.end_date) and entry.end_date.normalize() != entry.event_date.normalize():
            when += f" – {_date(entry.end_date)}"
        lines.append(f"{entry.seq:>3}. {when} ({entry.age_at_event}) [{entry.level}] "
                     f"{entry.title}")
        said = [part for part in (entry.detail, pd.notna(entry.outcome)
                                  and f"outcome: {entry.outcome}") if isinstance(part, str)]
        if said:
            lines.append("     " + " | ".join(said))
        lines.append(f"     sources ({entry.merged_count} events): {', '.join(entry.sources)}")
        lines.extend(f"     why: {reason}" for reason in entry.reasons)
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("example", load_examples(), ids=lambda e: e.id)
def test_golden_chronology(example, examples_run, request) -> None:
    entries, children = examples_run
    child = children.set_index("child_id").loc[example.id]
    text = render(pd.Series({"child_id": example.id, **child.to_dict()}),
                  entries[entries["child_id"] == example.id])
    _check_golden(GOLDEN / f"{example.id}.txt", text, request)


def _check_golden(path: Path, made: str, request) -> None:
    if request.config.getoption("--update-golden"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(made, encoding="utf-8")
    assert path.exists(), f"no golden file yet: run with --update-golden and review {path}"
    assert made == path.read_text(encoding="utf-8"), f"{path} differs: review, then update"


@pytest.fixture(scope="module")
def example_pages(examples_output, examples_run) -> dict[str, str]:
    """Each example child's page, rendered from the run's outputs for a fixed run."""
    entries, children = examples_run
    periods = pd.read_parquet(examples_output / "periods.parquet")
    members = ds.dataset(examples_output / "events", partitioning="hive").to_table(
        columns=MEMBER_COLUMNS).to_pandas()
    made = dict(child_pages(entries, children.sort_values("child_id", ignore_index=True),
                            periods, members, RULES, load_templates(), GOLDEN_RUN))
    return {example.id: made[page_id(example.id)] for example in load_examples()}


@pytest.mark.parametrize("example", load_examples(), ids=lambda e: e.id)
def test_golden_page(example, example_pages, request) -> None:
    # The whole page as a social worker gets it: a change to the templates, the CSS or
    # what an entry shows shows up here as a diff to review.
    _check_golden(GOLDEN / "pages" / f"{example.id}.html", example_pages[example.id], request)


@pytest.mark.parametrize("child_id", sorted(STORY))
def test_the_page_opens_on_the_key_events_of_the_story(child_id, examples_run) -> None:
    entries, _ = examples_run
    key = entries[(entries["child_id"] == child_id) & (entries["level"] == "key")]
    assert key["title"].tolist() == STORY[child_id]


def test_the_markup_note_is_text_not_markup(examples_run) -> None:
    entries, _ = examples_run
    # The note arrives as written; escaping is the page's job, and it must not be lost.
    marked = entries[entries["detail"].fillna("").str.contains("onerror=", regex=False)]
    assert len(marked) <= 1
