"""Pages: file names, escaping, the page's own policy, one child per page, summaries, new
marks and the timeline, on pages rendered from literal events."""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import replace
from datetime import UTC, date, datetime

import markupsafe
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import literal_events
from transforms.children import children
from transforms.pages import (
    MEMBER_COLUMNS,
    PageError,
    RowTemplate,
    RunInfo,
    _escaped,
    child_pages,
    index_page,
    load_templates,
    page_id,
    page_ids,
)
from transforms.periods import periods
from transforms.rules import load_rules
from transforms.score import scored_events
from transforms.shape import chronology
from transforms.timeline import KeyEvent, Period, timeline

RULES = load_rules()
TEMPLATES = load_templates()
AS_OF = pd.Timestamp("2026-03-31")
RUN = RunInfo(run_id="RUN2", generated_at=datetime(2026, 4, 1, 2, 5, tzinfo=UTC), as_of=AS_OF,
              rules_hash=RULES.digest, marks_new=False)
SAFE_NAME = re.compile(r"^[a-z0-9_-]{1,40}-[0-9a-f]{16}$")
HOSTILE = "<script>alert(1)</script> <img src=x onerror=alert(2)> \"quoted\" & 'single'"


def person(child_id: str, forename: str, surname: str, birth: str) -> dict:
    return {"child_id": child_id, "forename": forename, "surname": surname,
            "birth_date": pd.Timestamp(birth), "expected_birth_date": pd.NaT,
            "death_date": pd.NaT, "sex": "F", "ethnicity": "WBRI", "disabilities": None,
            "nationality": None, "has_ehcp": "N"}


def shaped(events: pd.DataFrame, people: list[dict], run: RunInfo = RUN,
           first_seen: pd.Series | None = None
           ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The entries, header facts and periods of `people`, made as the run makes them."""
    people_frame = pd.DataFrame(people, columns=list(person("", "", "", "2000-01-01"))
                                ).astype({"birth_date": "datetime64[ns]",
                                          "expected_birth_date": "datetime64[ns]",
                                          "death_date": "datetime64[ns]"})
    births = people_frame.set_index("child_id")["birth_date"]
    scored = scored_events(events, RULES)
    found = periods(scored, RULES)
    entries = chronology(scored, found, births, RULES, AS_OF, run.run_id, first_seen).entries
    return entries, children(people_frame, found, scored, entries, AS_OF), found


def pages(events: pd.DataFrame, people: list[dict], run: RunInfo = RUN,
          first_seen: pd.Series | None = None) -> dict[str, str]:
    """Each child's page by child id, made as the run makes it."""
    entries, header, found = shaped(events, people, run, first_seen)
    made = dict(child_pages(entries, header, found, events[MEMBER_COLUMNS], RULES,
                            TEMPLATES, run))
    return {child: made[page_id(child)] for child in header["child_id"]}


def two_children() -> pd.DataFrame:
    return literal_events(
        {"event_type": "referral", "event_date": "2025-05-01", "source_table": "ssd_cin_episodes",
         "source_id": "REF1", "outcome": "assessment", "detail": HOSTILE},
        {"event_type": "case_note", "event_date": "2025-06-01", "source_table": "ext_case_notes",
         "source_id": "CN1", "text": "Mia's note " + HOSTILE, "flagged_significant": True},
        *[{"event_type": "case_note", "event_date": f"2025-07-{day:02d}",
           "source_table": "ext_case_notes", "source_id": f"CN{day}",
           "text": f"routine note {day} <b>bold</b>"} for day in range(2, 6)],
        {"child_id": "C2", "event_type": "referral", "event_date": "2025-08-01",
         "source_table": "ssd_cin_episodes", "source_id": "REF2", "detail": "Leo's referral"},
    )


PEOPLE = [person("C1", "Mia", "O'Neil <i>x</i>", "2012-01-01"),
          person("C2", "Leo", "Stone", "2015-06-01")]


# ----------------------------------------------------------------------- file names

@pytest.mark.parametrize("child_id", [
    "P0000001", "../x", "../../etc/passwd", "a/b\\c", "A 1", "x" * 5000, "Zoë-Ünal", "中文",
    "", ".", "..", "CON", "con.html", "a\x00b", "   ",
])
def test_page_file_names_are_safe(child_id: str) -> None:
    # Letters, digits, - and _ only: no separator, no dot, nothing a file system treats
    # specially, and at most 57 characters however long the id.
    assert SAFE_NAME.match(page_id(child_id)), page_id(child_id)


def test_page_file_names_keep_alike_ids_apart() -> None:
    # Ids that differ only in case, punctuation, length past 40 or non-ASCII letters would
    # share a slug; the hash keeps their pages apart.
    alike = ["ab1", "AB1", "a b1", "a/b1", "a.b1", "ab1 ", "äb1", "ab1" + "x" * 40,
             "ab1" + "x" * 41]
    assert len({page_id(c) for c in alike}) == len(alike)
    # ...and the readable part stays recognisable.
    assert page_id("P0000001").startswith("p0000001-")


@settings(max_examples=300)
@given(st.lists(st.text(min_size=0, max_size=80), min_size=1, max_size=30, unique=True))
def test_any_ids_give_safe_distinct_names(ids: list[str]) -> None:
    names = [page_id(c) for c in ids]
    assert all(SAFE_NAME.match(n) for n in names)
    assert len(set(names)) == len(names)


def test_two_children_with_one_id_fail_rather_than_share_a_page() -> None:
    with pytest.raises(PageError, match="share a page"):
        page_ids(pd.Series(["C1", "C2", "C1"]))


# ----------------------------------------------------------------------- escaping

@settings(max_examples=300)
@given(st.lists(st.text(), max_size=20))
def test_arrow_escaping_matches_markupsafe(texts: list[str]) -> None:
    # Rows are escaped in Arrow for speed; they must read exactly as Jinja would escape them.
    assert _escaped(pa.array(texts, pa.string())).to_pylist() == [
        str(markupsafe.escape(t)) for t in texts]


def test_row_template_escapes_text_slots_and_checks_its_slots() -> None:
    row = RowTemplate.parse('<td title="$a">$b</td>')
    filled = row.fill(text={"a": pa.array(['"><script>']), "b": pa.array(["<b>"])}, html={})
    assert filled.to_pylist() == ['<td title="&#34;&gt;&lt;script&gt;">&lt;b&gt;</td>']
    with pytest.raises(PageError, match="slots"):
        row.fill(text={"a": pa.array(["x"])}, html={})
    with pytest.raises(PageError, match="slots"):
        row.fill(text={"a": pa.array(["x"]), "b": pa.array(["y"])}, html={"b": pa.array(["z"])})


def test_source_text_is_escaped_everywhere_on_the_page() -> None:
    page = pages(two_children(), PEOPLE)["C1"]
    # Entries (detail), summaries (the records counted) and the header (the name) all hold
    # markup from the source: none of it reaches the page as markup.
    assert "<script>alert" not in page and "<img" not in page and "<b>bold" not in page
    assert "<i>x</i>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;img src=x onerror=alert(2)&gt;" in page
    assert "routine note 3 &lt;b&gt;bold&lt;/b&gt;" in page
    assert "O&#39;Neil &lt;i&gt;x&lt;/i&gt;" in page
    # The one script on the page is its own.
    assert page.count("<script") == 1


# ----------------------------------------------------------------------- one child a page

def test_no_other_childs_data_on_a_page() -> None:
    made = pages(two_children(), PEOPLE)
    assert "Leo" not in made["C1"] and "REF2" not in made["C1"] and "Stone" not in made["C1"]
    assert "Mia" not in made["C2"] and "REF1" not in made["C2"] and "HOSTILE" not in made["C2"]
    assert "routine note" not in made["C2"] and "O&#39;Neil" not in made["C2"]


def test_rows_of_a_child_without_a_header_are_refused() -> None:
    events = two_children()
    entries, header, found = shaped(events, PEOPLE)
    only_leo = header[header["child_id"] == "C2"].reset_index(drop=True)
    with pytest.raises(PageError, match="without a header"):
        list(child_pages(entries, only_leo, found, events[MEMBER_COLUMNS], RULES, TEMPLATES,
                         RUN))


# ----------------------------------------------------------------------- policy

def _digest(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


@pytest.mark.parametrize("which", ["child", "index"])
def test_the_policy_allows_exactly_the_pages_own_style_and_script(which: str) -> None:
    made = pages(two_children(), PEOPLE)
    if which == "child":
        page = made["C1"]
    else:
        frame = pd.DataFrame([{**p, "current_status": "open case", "legal_status": None,
                               "placement": None, "worker": "W1", "team": "Team <A>",
                               "uasc": False, "has_person_record": True, "key_entries": 1,
                               "contacts": 0, "referrals": 1,
                               "s47_enquiries": 0, "cp_plans": 0, "periods_of_care": 0,
                               "placements": 0, "missing_episodes": 0, "last_seen": pd.NaT,
                               "last_seen_alone": pd.NaT} for p in PEOPLE])
        page = index_page(frame, TEMPLATES, RUN)
    policy = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', page)[1]
    styles = re.findall(r"<style>(.*?)</style>", page, flags=re.S)
    scripts = re.findall(r"<script>(.*?)</script>", page, flags=re.S)
    assert policy.startswith("default-src 'none'; ")
    style_src = re.search(r"style-src ([^;]+);", policy)[1].split()
    script_src = re.search(r"script-src ([^;]+);", policy)[1].split()
    assert sorted(style_src) == sorted(_digest(s) for s in styles)
    assert script_src == [_digest(s) for s in scripts]
    assert "form-action 'none'" in policy and "base-uri 'none'" in policy
    assert '<meta name="robots" content="noindex' in page


def test_the_printed_running_head_cannot_be_broken_by_a_name() -> None:
    people = [person("C1", 'Ann"}</style><script>x', "Lee", "2012-01-01"),
              person("C2", "Leo", "Stone", "2015-06-01")]
    page = pages(two_children(), people)["C1"]
    head = re.findall(r"<style>(@media print\{@page.*?)</style>", page, flags=re.S)
    assert len(head) == 1
    # Every character but letters, digits and a little punctuation is a CSS escape.
    assert re.fullmatch(r'@media print\{@page\{@top-left\{content:"[A-Za-z0-9 ,.()\\-]*";'
                        r"font:9pt system-ui,sans-serif\}\}\}", head[0])
    assert "\\000022" in head[0] and "\\00003c" in head[0]


# ----------------------------------------------------------------------- what a page shows

def test_a_summary_lists_the_records_it_counts_in_time_order() -> None:
    page = pages(two_children(), PEOPLE)["C1"]
    listed = re.search(r'<details class="members"><summary>The 4 records counted</summary>'
                       r"<ul>\n(.*?)</ul>", page, flags=re.S)
    assert listed, "the four routine notes are one summary entry, expandable"
    items = re.findall(r"<li>(.*?)</li>", listed[1])
    assert [i.split(":")[0] for i in items] == ["2 Jul 2025", "3 Jul 2025", "4 Jul 2025",
                                                "5 Jul 2025"]
    assert items[0] == ("2 Jul 2025: Case note: routine note 2 &lt;b&gt;bold&lt;/b&gt; "
                        "(ext_case_notes:CN2)")


def test_a_summary_counting_a_missing_event_fails_the_page() -> None:
    events = two_children()
    entries, header, found = shaped(events, PEOPLE)
    members = events.loc[events["source_id"] != "CN3", MEMBER_COLUMNS]
    with pytest.raises(PageError, match="1 events counted in summaries are missing"):
        list(child_pages(entries, header, found, members, RULES, TEMPLATES, RUN))


def test_every_entry_is_a_row_with_its_level_category_and_reasons() -> None:
    page = pages(two_children(), PEOPLE)["C1"]
    rows = re.findall(r'<tr id="e-(\d+)" class="([a-z ]+)" data-level="(\w+)" '
                      r'data-category="([^"]*)">', page)
    # The referral, Mia's flagged note, and her four routine notes counted in a summary.
    assert [(seq, level) for seq, _, level, _ in rows] == [
        ("1", "significant"), ("2", "significant"), ("3", "context")]
    assert rows[2][1] == "context summary" and rows[2][3] == "routine activity"
    # Why each is here, with the rule that put it there.
    assert '(type.referral)</span></li>' in page
    # The category filter offers the page's own categories.
    assert '<option value="routine activity">' in page


def test_new_entries_are_marked_only_when_there_was_a_previous_run() -> None:
    events = two_children()
    first = pages(events, PEOPLE, run=RUN)["C1"]
    assert '<span class="new">' not in first
    # The referral was shown by RUN1; the note and the summary are new in RUN2.
    seen_before = pd.Series(["RUN1"], index=["ssd_cin_episodes:REF1:0"])
    later = replace(RUN, marks_new=True)
    page = pages(events, PEOPLE, run=later, first_seen=seen_before)["C1"]
    new_rows = re.findall(r'<tr id="e-(\d+)"[^>]*>(?:(?!</tr>).)*?<span class="new">New',
                          page, flags=re.S)
    assert "2 entries new since the previous run" in page
    assert new_rows == ["2", "3"]


def test_the_footer_says_when_from_what_and_by_which_run() -> None:
    page = pages(two_children(), PEOPLE)["C1"]
    footer = page[page.index("<footer>"):]
    for text in ("1 Apr 2026 02:05 UTC", "31 Mar 2026", RULES.digest, "RUN2"):
        assert text in footer


# ----------------------------------------------------------------------- timeline

def test_timeline_places_periods_and_keeps_marks_apart() -> None:
    picture = timeline(
        [Period("cp_plan", date(2020, 1, 1), date(2021, 1, 1), "plan"),
         Period("looked_after", date(2021, 1, 1), None, "care"),
         Period("placement", date(2021, 1, 1), date(2021, 6, 1), "first"),
         Period("missing", date(2022, 3, 1), date(2022, 3, 1), "one night")],
        [KeyEvent(1, date(2020, 1, 1), "1. Plan"), KeyEvent(2, date(2020, 1, 2), "2. Next day")],
        birth=date(2010, 1, 1), as_of=date(2026, 1, 1))
    bars = {b.kind: b for b in picture.bars}
    # From birth (0%) to the as-of date (100%): 2020 is 10 of 16 years in.
    assert bars["cp_plan"].x == pytest.approx(62.5, abs=0.1)
    assert bars["looked_after"].x + bars["looked_after"].width == pytest.approx(100)
    # A one-day episode is still visible; placements sit under their period of care.
    assert bars["missing"].width >= 0.6
    assert bars["placement"].y > bars["looked_after"].y
    assert [lane.label for lane in picture.lanes] == ["Child protection plan", "Looked after",
                                                      "Missing"]
    # Two key events a day apart would overlap: the second goes on another row.
    assert picture.marks[0].y != picture.marks[1].y
    # Year ticks fit a phone: at most about six labels.
    assert 1 <= len(picture.ticks) <= 7


def test_a_child_with_nothing_recorded_still_gets_a_page() -> None:
    # A person in the source with no events (or all rejected) has a header and an empty
    # chronology, not a missing page.
    made = pages(two_children(), [*PEOPLE, person("C3", "Ava", "Lane", "2020-02-02")])
    assert "No key events recorded." in made["C3"]
    assert "<caption>0 entries" in made["C3"] and "Mia" not in made["C3"]


def test_an_empty_shard_renders_no_pages() -> None:
    # A shard with no children: its partitions are written empty, and untyped when read.
    nobody = literal_events().iloc[:0]
    assert pages(nobody, []) == {}


def test_a_reason_reads_as_its_sentence_then_its_rule() -> None:
    from transforms.pages import _reason_items

    reasons = pa.array([["type.birth: Birth: where it starts", "no rule id here"], []],
                       pa.list_(pa.string()))
    assert _reason_items(reasons).to_pylist() == [
        '<li>Birth: where it starts <span class="rule">(type.birth)</span></li>'
        "<li>no rule id here</li>", ""]


def test_a_child_whose_person_record_was_rejected_keeps_a_page() -> None:
    # Validation can reject a person row (a death date before the birth date) and keep the
    # rest of the record: the chronology still reaches a page, which says what is missing.
    made = pages(two_children(), [PEOPLE[1]])
    assert set(made) == {"C1", "C2"}
    assert "<h1>Child C1 " in made["C1"] and "person record was rejected" in made["C1"]
    assert "Referred to children&#39;s social care" in made["C1"]
    assert "person record was rejected" not in made["C2"]
