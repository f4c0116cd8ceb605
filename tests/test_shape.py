"""Shaping: merging, joining, collapsing, history, gaps, ages and order, on literal events."""

from __future__ import annotations

import pandas as pd
import pytest

from tests.conftest import literal_events as events
from transforms.children import children
from transforms.periods import periods, visit_gaps
from transforms.rules import load_rules
from transforms.score import scored_events
from transforms.shape import chronology

RULES = load_rules()
AS_OF = pd.Timestamp("2026-03-31")
BIRTHS = pd.Series(pd.to_datetime(["2012-01-01", "2015-06-01"]), index=["C1", "C2"],
                   dtype="datetime64[ns]")


def shaped(frame: pd.DataFrame, first_seen: pd.Series | None = None, rules=RULES):
    scored = scored_events(frame, rules)
    return chronology(scored, periods(scored, rules), BIRTHS, rules, AS_OF, "RUN2", first_seen)


def entries_of(*rows: dict) -> pd.DataFrame:
    return shaped(events(*rows)).entries


def test_same_day_group_is_one_entry_with_every_source() -> None:
    entries = entries_of(
        {"event_type": "contact", "event_date": "2025-05-01", "source_table": "ssd_contacts",
         "source_id": "CON1", "outcome": "new referral"},
        {"event_type": "referral", "event_date": "2025-05-01", "source_table": "ssd_cin_episodes",
         "source_id": "REF1", "outcome": "assessment"},
    )
    # The contact that led to the referral is the same happening: one entry, headed by the
    # referral (higher score), listing both sources; the outcome is the latest recorded.
    assert len(entries) == 1
    entry = entries.iloc[0]
    assert entry["title"] == "Referred to children's social care"
    assert list(entry["sources"]) == ["ssd_cin_episodes:REF1", "ssd_contacts:CON1"]
    assert entry["merged_count"] == 2 and entry["outcome"] == "assessment"


def test_a_case_note_joins_its_days_entry_only_if_it_matters_no_more() -> None:
    entries = entries_of(
        {"event_type": "s47_start", "event_date": "2025-05-01"},
        {"event_type": "case_note", "event_date": "2025-05-01", "text": "Strategy meeting."},
        {"event_type": "referral", "event_date": "2025-06-01"},
        {"event_type": "case_note", "event_date": "2025-06-01", "flagged_significant": True,
         "text": "She disclosed abuse; police attended."},
    )
    # The routine note joins the S47 entry; the escalated note (score 100) keeps its own.
    assert entries["event_type"].tolist() == ["s47_start", "referral", "case_note"]
    assert entries["merged_count"].tolist() == [2, 1, 1]


def test_joins_put_a_process_in_one_entry_across_days() -> None:
    entries = entries_of(
        {"event_type": "referral", "event_date": "2025-01-10", "episode_id": "R1",
         "end_date": "2025-03-01"},
        {"event_type": "assessment_start", "event_date": "2025-01-11", "episode_id": "R1",
         "source_id": "A1"},
        {"event_type": "assessment_completed", "event_date": "2025-02-20", "episode_id": "R1",
         "source_id": "A1", "outcome": "no further action", "seen": "Y"},
        {"event_type": "assessment_factors", "event_date": "2025-02-20", "episode_id": "A1",
         "code": "3A"},
        {"event_type": "case_closed", "event_date": "2025-03-01", "episode_id": "R1",
         "code": "RC8"},
    )
    # Start joins completion (same record), completion joins the referral (same episode)
    # and brings its same-day factors; the closure joins the referral too. One entry, at
    # the referral, spanning to the closure, with the assessment's outcome.
    assert len(entries) == 1
    entry = entries.iloc[0]
    assert entry["event_type"] == "referral" and entry["merged_count"] == 5
    assert entry["end_date"] == pd.Timestamp("2025-03-01")
    assert entry["outcome"] == "no further action"


def test_an_episode_never_joins_another_childs_entry() -> None:
    entries = entries_of(
        {"event_type": "referral", "event_date": "2024-01-05", "episode_id": "R1"},
        # C2's assessment wrongly names C1's referral: it must stay in C2's chronology.
        {"event_type": "assessment_completed", "event_date": "2024-02-01", "episode_id": "R1",
         "child_id": "C2", "source_table": "ssd_cin_assessments", "source_id": "AS1"},
    )
    by_child = entries.groupby("child_id")["event_ids"].agg(lambda ids: sorted(
        i for listed in ids for i in listed)).to_dict()
    assert by_child == {"C1": ["t:0:0"], "C2": ["ssd_cin_assessments:AS1:1"]}


def test_an_escalated_step_keeps_its_own_entry() -> None:
    entries = entries_of(
        {"event_type": "referral", "event_date": "2025-01-10", "episode_id": "R1"},
        {"event_type": "assessment_completed", "event_date": "2025-02-20", "episode_id": "R1",
         "seen": "N"},
    )
    # Child not seen lifts the assessment above the referral: it must stay visible.
    assert entries["event_type"].tolist() == ["referral", "assessment_completed"]


def test_routine_runs_collapse_into_counted_summaries() -> None:
    visits = [{"event_type": "cp_visit", "event_date": day, "seen": "Y",
               "seen_alone": "N" if day == "2025-06-21" else "Y"}
              for day in ("2025-05-10", "2025-05-24", "2025-06-07", "2025-06-21")]
    entries = entries_of(
        {"event_type": "cp_plan_start", "event_date": "2025-05-01", "code": "NEG",
         "end_date": "2025-07-10"},
        *visits,
        {"event_type": "cp_review", "event_date": "2025-07-01", "outcome": "plan to continue"},
        {"event_type": "cp_visit", "event_date": "2025-07-05", "seen": "Y", "seen_alone": "Y"},
    )
    # Four routine visits between the plan and its review are one summary; the single
    # visit after the review is too short a run to summarise.
    assert entries["event_type"].tolist() == ["cp_plan_start", "summary", "cp_review",
                                              "cp_visit"]
    summary = entries.iloc[1]
    assert summary["title"] == "4 child protection visits, 10 May – 21 Jun 2025"
    assert summary["detail"] == "child seen at 4 of 4 visits, alone at 3"
    assert summary["merged_count"] == 4 and summary["level"] == "context"
    assert summary["is_summary"]
    assert any(r.startswith("child_not_seen_alone:") for r in summary["reasons"])


def test_older_significant_history_is_summarised_key_events_are_not() -> None:
    entries = entries_of(
        {"event_type": "referral", "event_date": "2018-01-10", "end_date": "2018-03-01"},
        {"event_type": "case_note", "event_date": "2018-02-01", "text": "Call."},
        {"event_type": "cp_plan_start", "event_date": "2019-01-01", "end_date": "2019-01-02"},
        {"event_type": "address_start", "event_date": "2019-05-01", "end_date": "2020-01-01"},
        {"event_type": "address_start", "event_date": "2020-01-01"},
        {"event_type": "referral", "event_date": "2025-01-10"},
    )
    # As of March 2026 with history_years 2: the 2018 referral and its note, and the
    # addresses before 2024, are summarised; the CP plan (key) and the recent referral
    # keep their own entries. The 2020 address is still the home (no end): not over.
    assert entries["event_type"].tolist() == ["summary", "cp_plan_start", "address_start",
                                              "address_start", "referral"]
    # The summary is context: the default view is key events and recent significant ones.
    assert entries.iloc[0]["level"] == "context" and entries.iloc[0]["score"] == 50
    assert entries.iloc[0]["reasons"][0].startswith("history:")


def test_gap_entries_show_missing_visits_while_a_plan_is_open() -> None:
    frame = events(
        {"event_type": "cp_plan_start", "event_date": "2025-10-01", "source_id": "CPP1"},
        {"event_type": "cp_visit", "event_date": "2025-10-10", "seen": "Y", "seen_alone": "Y"},
        {"event_type": "cp_visit", "event_date": "2025-12-01", "seen": "Y", "seen_alone": "Y"},
    )
    scored = scored_events(frame, RULES)
    gaps = visit_gaps(periods(scored, RULES), scored, RULES, AS_OF)
    # 10 Oct to 1 Dec is 52 days; 1 Dec to 31 Mar (still open) 120 days: both over 21.
    assert gaps["days"].tolist() == [52, 120]
    assert gaps["is_open"].tolist() == [False, True]
    entries = shaped(frame).entries
    gap_titles = entries.loc[entries["is_gap"], "title"].tolist()
    assert gap_titles == ["No visit recorded for 52 days",
                          "No visit recorded for 120 days, to date"]
    assert entries.loc[entries["is_gap"], "merged_count"].tolist() == [0, 0]


@pytest.mark.parametrize(("when", "age"), [
    ("2011-11-20", "before birth (6 weeks before)"),  # 42 days before birth
    ("2012-01-01", "newborn"),
    ("2012-01-04", "3 days"),
    ("2012-02-20", "7 weeks"),
    ("2013-03-01", "14 months"),  # January 2012 to March 2013
    ("2014-04-01", "2 years 3 months"),
    ("2020-01-01", "8 years"),  # from 5, whole years only
])
def test_age_at_event_in_words(when: str, age: str) -> None:
    entries = entries_of({"event_type": "referral", "event_date": when})
    assert entries.iloc[0]["age_at_event"] == age


def test_same_day_events_follow_process_order_and_are_numbered() -> None:
    entries = entries_of(
        {"event_type": "cp_plan_start", "event_date": "2025-03-01", "end_date": "2025-03-02"},
        {"event_type": "s47_start", "event_date": "2025-03-01"},
        {"event_type": "referral", "event_date": "2025-03-01"},
        {"event_type": "birth", "event_date": "2012-01-01", "child_id": "C2"},
    )
    # Referral < S47 < CP plan on one day; children in id order; seq per child.
    assert entries["child_id"].tolist() == ["C1", "C1", "C1", "C2"]
    assert entries["event_type"].tolist()[:3] == ["referral", "s47_start", "cp_plan_start"]
    assert entries["seq"].tolist() == [1, 2, 3, 1]


def test_left_out_events_are_counted_with_their_rule() -> None:
    result = shaped(events(
        {"event_type": "worker_allocated", "event_date": "2025-01-01", "source_table": "inv"},
        {"event_type": "worker_ended", "event_date": "2025-06-01", "source_table": "inv"},
    ))
    assert result.filtered[["event_type", "events", "rule"]].values.tolist() == [
        ["worker_ended", 1, "type.worker_ended"]]
    row = result.accounting.iloc[0]
    assert (row["events"], row["entry"], row["filtered"]) == (2, 1, 1)


def test_first_seen_run_is_carried_from_the_previous_output() -> None:
    frame = events({"event_type": "referral", "event_date": "2025-01-01"},
                   {"event_type": "referral", "event_date": "2025-09-01"})
    first = shaped(frame).entries
    previous = pd.Series(["RUN1"], index=[first.iloc[0]["entry_id"]], dtype="str")
    again = shaped(frame, first_seen=previous).entries
    assert again["first_seen_run"].tolist() == ["RUN1", "RUN2"]


def test_periods_of_care_span_their_episodes() -> None:
    frame = events(
        {"event_type": "cla_episode_start", "event_date": "2021-05-04", "episode_id": "CLA1",
         "end_date": "2021-08-16", "code": "S"},
        {"event_type": "cla_episode_start", "event_date": "2021-08-16", "episode_id": "CLA1",
         "end_date": "2022-04-11", "code": "L"},
        {"event_type": "cla_episode_start", "event_date": "2022-04-11", "episode_id": "CLA1",
         "code": "P"},
    )
    found = periods(scored_events(frame, RULES), RULES)
    care = found[found["kind"] == "looked_after"]
    # Three SSDA903 episodes, one period of care, open because the last one is.
    assert care[["period_id", "start_date", "is_open", "code"]].values.tolist() == [
        ["looked_after:CLA1", pd.Timestamp("2021-05-04"), True, "S"]]


def test_children_header_facts() -> None:
    frame = events(
        {"event_type": "referral", "event_date": "2025-01-01", "source_id": "R1"},
        {"event_type": "cp_plan_start", "event_date": "2025-02-01", "source_id": "P1"},
        {"event_type": "cp_visit", "event_date": "2025-03-01", "seen": "Y", "seen_alone": "N"},
        {"event_type": "cp_visit", "event_date": "2025-03-15", "seen": "Y", "seen_alone": "Y"},
        {"event_type": "cp_visit", "event_date": "2025-03-29", "seen": "N", "seen_alone": "N"},
        {"event_type": "worker_allocated", "event_date": "2025-01-01", "worker": "W1",
         "team": "North"},
    )
    scored = scored_events(frame, RULES)
    found = periods(scored, RULES)
    entries = chronology(scored, found, BIRTHS, RULES, AS_OF, "RUN").entries
    people = pd.DataFrame({"child_id": ["C1"], "forename": ["Ada"], "surname": ["Test"],
                           "birth_date": [pd.Timestamp("2012-01-01")]})
    row = children(people.reindex(columns=[
        "child_id", "forename", "surname", "birth_date", "expected_birth_date", "death_date",
        "sex", "ethnicity", "disabilities", "nationality", "has_ehcp"]), found, scored,
        entries, AS_OF).iloc[0]
    assert row["current_status"] == "child protection plan"
    assert (row["referrals"], row["cp_plans"], row["raw_rows"]) == (1, 1, 6)
    assert row["last_seen"] == pd.Timestamp("2025-03-15")
    assert row["last_seen_alone"] == pd.Timestamp("2025-03-15")
    assert (row["worker"], row["team"]) == ("W1", "North")


def test_gaps_are_per_child_even_when_period_ids_collide() -> None:
    rows = []
    for child, start, visit in (("C1", "2025-10-01", "2025-10-15"),
                                ("C2", "2026-01-01", "2026-01-20")):
        rows += [{"event_type": "cla_episode_start", "event_date": start, "child_id": child,
                  "episode_id": "X", "code": "S", "source_id": f"E{child}"},
                 {"event_type": "cla_visit", "event_date": visit, "child_id": child,
                  "seen": "Y", "seen_alone": "Y"}]
    scored = scored_events(events(*rows), RULES)
    gaps = visit_gaps(periods(scored, RULES), scored, RULES, AS_OF)
    # Both children's periods of care are "looked_after:X"; each is measured on its own
    # visits: C1 from 15 Oct to 31 Mar (167 days), C2 from 20 Jan (70 days: no gap).
    assert gaps[["child_id", "days"]].values.tolist() == [["C1", 167]]


def test_a_visit_at_a_time_on_the_last_day_counts() -> None:
    frame = events(
        {"event_type": "cp_plan_start", "event_date": "2026-03-05"},
        {"event_type": "cp_visit", "event_date": "2026-03-31 10:00", "seen": "Y",
         "seen_alone": "Y"},
    )
    scored = scored_events(frame, RULES)
    gaps = visit_gaps(periods(scored, RULES), scored, RULES, AS_OF)
    # 26 days from the plan's start to the visit on the "as of" day: a gap that the visit
    # ended, not one still running "to date".
    assert gaps[["days", "is_open"]].values.tolist() == [[26, False]]


def test_two_records_of_one_type_on_one_day_stay_two_entries() -> None:
    entries = entries_of(
        {"event_type": "missing_start", "event_date": "2025-05-01 08:00", "source_id": "M1",
         "code": "M"},
        {"event_type": "missing_start", "event_date": "2025-05-01 20:00", "source_id": "M2",
         "code": "M"},
    )
    assert entries["merged_count"].tolist() == [1, 1]
