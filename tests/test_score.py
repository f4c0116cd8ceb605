"""Scoring: base scores, every escalation kind, levels and reasons, on literal events."""

from __future__ import annotations

import pandas as pd
import pytest

from tests.conftest import literal_events as events
from transforms.rules import load_rules
from transforms.score import reason_lists, scored_events

RULES = load_rules()


def scored_one(**row: object) -> pd.Series:
    return scored_events(events(row), RULES).iloc[0]


def fired_ids(mask: int) -> list[str]:
    return [e.id for i, e in enumerate(RULES.escalations) if int(mask) >> i & 1]


def test_base_scores_give_levels() -> None:
    frame = scored_events(events(
        {"event_type": "cp_plan_start", "event_date": "2020-01-01"},
        {"event_type": "referral", "event_date": "2020-01-01"},
        {"event_type": "cin_visit", "event_date": "2020-01-01", "seen": "Y", "seen_alone": "Y"},
        {"event_type": "worker_ended", "event_date": "2020-01-01"},
    ), RULES)
    # PRACTICE.md: a CP plan start is key, a referral significant, a visit where the child
    # was seen alone routine; the end of an involvement adds nothing (left out).
    assert frame["level"].tolist() == ["key", "significant", "context", "filtered"]
    assert frame["fired"].tolist() == [0, 0, 0, 0]


# Each case: one event, the escalation that must fire, and the level it then has.
ESCALATIONS = [
    # A second referral within 12 months is a re-referral; see the pair test below.
    ({"event_type": "assessment_factors", "event_date": "2020-01-01", "code": "3A,11A"},
     "factor_sexual_exploitation", "key"),
    ({"event_type": "cla_episode_start", "event_date": "2020-01-01", "code": "S"},
     "became_looked_after", "key"),
    ({"event_type": "cla_episode_end", "event_date": "2020-01-01", "code": "E13"},
     "ceased_looked_after", "key"),
    ({"event_type": "legal_status_start", "event_date": "2020-01-01", "code": "C2"},
     "care_or_placement_order", "key"),
    ({"event_type": "placement_end", "event_date": "2020-01-01", "code": "CREQB"},
     "unplanned_placement_ending", "key"),
    ({"event_type": "case_closed", "event_date": "2020-01-01", "code": "RC1"},
     "closed_by_order", "key"),
    ({"event_type": "cp_visit", "event_date": "2020-01-01", "seen": "N", "seen_alone": "N"},
     "child_not_seen", "significant"),
    # Not seen alone stays routine: the summary counting the visits says how many.
    ({"event_type": "cp_visit", "event_date": "2020-01-01", "seen": "Y", "seen_alone": "N"},
     "child_not_seen_alone", "context"),
    ({"event_type": "worker_allocated", "event_date": "2020-01-01", "code": "CHCHAN"},
     "worker_change_asked_by_child", "significant"),
    ({"event_type": "health_check", "event_date": "2020-01-01", "code": "Refused"},
     "health_check_refused", "significant"),
    ({"event_type": "care_leaver_contact", "event_date": "2020-01-01", "code": "NO"},
     "care_leaver_not_in_touch", "key"),
    ({"event_type": "care_leaver_contact", "event_date": "2020-01-01", "code": "YES",
      "outcome": "accommodation unsuitable"}, "care_leaver_unsuitable_accommodation", "key"),
    ({"event_type": "case_note", "event_date": "2020-01-01", "flagged_significant": True,
      "text": "Routine call."}, "note_marked_significant", "significant"),
    ({"event_type": "case_note", "event_date": "2020-01-01", "text": "She DISCLOSED it."},
     "note_reports_disclosure", "significant"),
    ({"event_type": "case_note", "event_date": "2020-01-01", "text": "a bruise on the arm"},
     "note_reports_injury", "significant"),
    ({"event_type": "case_note", "event_date": "2020-01-01", "text": "Police attended."},
     "note_reports_police", "significant"),
    ({"event_type": "case_note", "event_date": "2020-01-01", "text": "admitted to hospital"},
     "note_reports_hospital", "significant"),
    ({"event_type": "case_note", "event_date": "2020-01-01", "text": "excluded for 5 days"},
     "note_reports_exclusion", "significant"),
]


@pytest.mark.parametrize(("row", "rule", "level"), ESCALATIONS)
def test_each_escalation_fires_and_names_itself(row: dict, rule: str, level: str) -> None:
    scored = scored_one(**row)
    assert rule in fired_ids(scored["fired"])
    assert scored["level"] == level


# Words near the escalations' that must not set them off.
QUIET = [
    {"event_type": "case_note", "event_date": "2020-01-01",
     "text": "Police, health and education checks completed."},
    {"event_type": "case_note", "event_date": "2020-01-01",
     "text": "Strategy discussion held with police and health."},
    {"event_type": "cla_episode_end", "event_date": "2020-01-01", "code": "X1"},
    {"event_type": "assessment_factors", "event_date": "2020-01-01", "code": "3A,4B"},
    {"event_type": "cp_visit", "event_date": "2020-01-01", "seen": "Y", "seen_alone": "Y"},
]


@pytest.mark.parametrize("row", QUIET)
def test_near_misses_do_not_escalate(row: dict) -> None:
    assert fired_ids(scored_one(**row)["fired"]) == []


def test_no_escalation_for_what_cannot_apply() -> None:
    # An unborn child cannot be seen; a baby is not expected to be seen alone.
    unborn = scored_one(event_type="assessment_completed", event_date="2011-11-01", seen="N")
    baby = scored_one(event_type="cp_visit", event_date="2013-01-01", seen="Y", seen_alone="N")
    assert fired_ids(unborn["fired"]) == []
    assert fired_ids(baby["fired"]) == []


def test_repeats_count_within_the_window_per_child() -> None:
    frame = scored_events(events(
        {"event_type": "referral", "event_date": "2019-01-01"},
        {"event_type": "referral", "event_date": "2019-11-30"},  # 333 days later: re-referral
        {"event_type": "referral", "event_date": "2021-06-01"},  # 549 days later: not
        {"event_type": "referral", "event_date": "2019-06-01", "child_id": "C2"},
    ), RULES)
    assert ["re_referral" in fired_ids(m) for m in frame["fired"]] == [False, True, False, False]


def test_third_missing_episode_in_a_year_is_repeated() -> None:
    frame = scored_events(events(*[
        {"event_type": "missing_start", "event_date": day, "code": "M"}
        for day in ("2020-01-01", "2020-03-01", "2020-12-01", "2022-01-01")]), RULES)
    assert ["repeated_missing" in fired_ids(m) for m in frame["fired"]] == \
        [False, False, True, False]


def test_only_the_first_address_is_not_a_move() -> None:
    frame = scored_events(events(
        {"event_type": "address_start", "event_date": "2015-01-01"},
        {"event_type": "address_start", "event_date": "2012-01-01"},
    ), RULES)
    assert frame["level"].tolist() == ["significant", "context"]


def test_scores_stay_within_0_to_100() -> None:
    note = scored_one(event_type="case_note", event_date="2020-01-01", flagged_significant=True,
                      text="Disclosed an injury: police attended, admitted to hospital.")
    assert note["score"] == 100 and note["level"] == "key"


def test_reasons_are_the_base_rule_then_escalations() -> None:
    frame = scored_events(events(
        {"event_type": "health_check", "event_date": "2020-01-01", "code": "Refused"}), RULES)
    reasons = reason_lists(frame["event_type"], frame["fired"].to_numpy(), RULES).to_pylist()
    assert reasons == [[
        "type.health_check: Health check: routine when completed",
        "health_check_refused: Health check refused"]]
