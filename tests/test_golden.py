"""Golden chronologies of the hand-written example children (fixtures/examples/*.yml).

Each example's story is what a social worker would tell; `tests/golden/<id>.txt` is the
chronology the pipeline must make of it, one numbered entry per block, reviewed line by
line against the story. `STORY` below says, for each child, the key events the story
names, in order: the page must open on exactly those. After a deliberate change to the
rules or the shaping, rewrite the files with `python -m pytest tests/test_golden.py
--update-golden` and review the diff before committing it.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pandas as pd
import pyarrow.dataset as ds
import pytest

from fixtures.examples import load_examples, write_examples
from fixtures.generator import schema_statements
from flows.build import build_chronologies

GOLDEN = Path(__file__).with_name("golden")
AS_OF = "2026-03-31"

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
def examples_run(prefect_harness, tmp_path_factory) -> tuple[pd.DataFrame, pd.DataFrame]:
    folder = tmp_path_factory.mktemp("golden")
    path = folder / "examples.sqlite"
    with sqlite3.connect(path) as conn:
        for statement in schema_statements(True):
            conn.execute(statement)
    write_examples(path)
    manifest = build_chronologies(source=str(path), out=str(folder / "out"), shards=2,
                                  as_of=AS_OF)
    assert manifest["status"] == "succeeded" and manifest["rows_rejected"] == 0
    version = Path(manifest["version"])
    entries = ds.dataset(version / "chronology", partitioning="hive").to_table().to_pandas()
    children = pd.read_parquet(version / "children.parquet")
    return entries.sort_values(["child_id", "seq"], ignore_index=True), children


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
    path = GOLDEN / f"{example.id}.txt"
    if request.config.getoption("--update-golden"):
        GOLDEN.mkdir(exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"no golden file yet: run with --update-golden and review {path}"
    assert text == path.read_text(encoding="utf-8")


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
