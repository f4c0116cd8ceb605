"""Staging of every source table, on tiny literal frames."""

from __future__ import annotations

import pandas as pd
import pytest

from tests.conftest import conformed
from transforms import stage
from transforms.ssd import TABLES

CHILD = {"pers_person_id": "P1", "pers_forename": "Ada", "pers_surname": "Test",
         "pers_sex": "F", "pers_dob": "2010-05-01"}


def staged(table: str, rows: list[dict], extra: dict[str, list[dict]] | None = None
           ) -> pd.DataFrame:
    tables = {"ssd_person": [CHILD], **(extra or {}), table: rows}
    frames = conformed(tables)
    shard = stage.Shard(frames)
    events = stage.events(shard, stage.people(shard))
    return events[events["source_table"] == table].sort_values("event_id", ignore_index=True)


# Each case: table, rows, the (event_type, date) pairs expected, and column checks on
# the first event. Why each is right is in the comment beside it.
CASES = [
    # Birth and death are both dated facts of a life; one person row gives both.
    ("ssd_person", None, [("birth", "2010-05-01"), ("death", "2020-01-02")], {}),
    ("ssd_address", [{"addr_table_id": "A1", "addr_person_id": "P1", "addr_address_type": "HOME",
                      "addr_address_start_date": "2012-01-01", "addr_address_end_date":
                      "2014-01-01", "addr_address_postcode": "AB1 2CD"}],
     [("address_end", "2014-01-01"), ("address_start", "2012-01-01")], {"detail": "AB1 2CD"}),
    ("ssd_immigration_status",
     [{"immi_immigration_status_id": "I1", "immi_person_id": "P1",
       "immi_immigration_status": "UASC", "immi_immigration_status_start_date": "2024-02-02"}],
     [("immigration_status_start", "2024-02-02")], {"detail": "UASC"}),
    ("ssd_mother", [{"moth_table_id": "M1", "moth_person_id": "P1",
                     "moth_childs_person_id": "P9", "moth_childs_dob": "2026-01-01"}],
     [("became_parent", "2026-01-01")], {}),
    # The outcome JSON says NFA: the contact's outcome is "no further action".
    ("ssd_contacts", [{"cont_contact_id": "C1", "cont_person_id": "P1",
                       "cont_contact_date": "2015-03-11 00:00:00", "cont_contact_source_code":
                       "6", "cont_contact_outcome_json": '{"NFA_FLAG": "Y", "ADVICE_FLAG": ""}'}],
     [("contact", "2015-03-11")], {"outcome": "no further action", "code": "6",
                                   "date_precision": "day"}),
    ("ssd_early_help_episodes",
     [{"earl_episode_id": "E1", "earl_person_id": "P1", "earl_episode_start_date": "2013-01-01",
       "earl_episode_end_date": "2013-06-01", "earl_episode_end_reason": "Outcomes met"}],
     [("early_help_end", "2013-06-01"), ("early_help_start", "2013-01-01")],
     {"outcome": "Outcomes met"}),
    # An open referral has no close date, so it gives one event, not two.
    ("ssd_cin_episodes", [{"cine_referral_id": "R1", "cine_person_id": "P1",
                           "cine_referral_date": "2016-01-04", "cine_cin_primary_need_code": "N1",
                           "cine_referral_outcome_json":
                           '{"SINGLE_ASSESSMENT_FLAG": "Y", "STRATEGY_DISCUSSION_FLAG": "Y"}'}],
     [("referral", "2016-01-04")], {"outcome": "assessment; strategy discussion", "code": "N1"}),
    ("ssd_cin_assessments", [{"cina_assessment_id": "AS1", "cina_person_id": "P1",
                              "cina_assessment_start_date": "2016-01-05",
                              "cina_assessment_auth_date": "2016-02-10",
                              "cina_assessment_child_seen": "1",
                              "cina_assessment_outcome_json": '{"PROV_OF_SERVICES_FLAG": "Y"}'}],
     [("assessment_completed", "2016-02-10"), ("assessment_start", "2016-01-05")],
     {"seen": "Y"}),
    ("ssd_cin_plans", [{"cinp_cin_plan_id": "CP1", "cinp_person_id": "P1",
                        "cinp_cin_plan_start_date": "2016-03-01"}],
     [("cin_plan_start", "2016-03-01")], {}),
    # Flags spelt "true"/"0" are read as Y and N.
    ("ssd_cin_visits", [{"cinv_cin_visit_id": "V1", "cinv_person_id": "P1",
                         "cinv_cin_visit_date": "2016-03-08T14:30:00", "cinv_cin_visit_seen":
                         "true", "cinv_cin_visit_seen_alone": "0"}],
     [("cin_visit", "2016-03-08 14:30:00")],
     {"seen": "Y", "seen_alone": "N", "date_precision": "time"}),
    ("ssd_s47_enquiry", [{"s47e_s47_enquiry_id": "S1", "s47e_person_id": "P1",
                          "s47e_s47_start_date": "2016-01-06", "s47e_s47_end_date": "2016-01-20",
                          "s47e_s47_outcome_json": '{"CP_CONFERENCE_FLAG": "Y"}'}],
     [("s47_end", "2016-01-20"), ("s47_start", "2016-01-06")],
     {"outcome": "child protection conference"}),
    ("ssd_initial_cp_conference", [{"icpc_icpc_id": "IC1", "icpc_person_id": "P1",
                                    "icpc_icpc_date": "2016-02-01", "icpc_icpc_outcome_cp_flag":
                                    "Y"}],
     [("initial_cp_conference", "2016-02-01")], {"outcome": "child protection plan"}),
    # "Neglect" as a description is the code NEG; a plan gives a start and an end.
    ("ssd_cp_plans", [{"cppl_cp_plan_id": "PL1", "cppl_person_id": "P1",
                       "cppl_cp_plan_start_date": "2016-02-01", "cppl_cp_plan_end_date":
                       "2017-01-15", "cppl_cp_plan_initial_category": "Neglect",
                       "cppl_cp_plan_latest_category": "Multiple: NEG, EMO"}],
     [("cp_plan_end", "2017-01-15"), ("cp_plan_start", "2016-02-01")],
     {"code": "MUL"}),
    ("ssd_cp_reviews", [{"cppr_cp_review_id": "RV1", "cppr_person_id": "P1",
                         "cppr_cp_review_date": "2016-05-01",
                         "cppr_cp_review_outcome_continue_cp": "Y"}],
     [("cp_review", "2016-05-01")], {"outcome": "plan to continue"}),
    ("ssd_cp_visits", [{"cppv_cp_visit_id": "CV1", "cppv_person_id": "P1",
                        "cppv_cp_visit_date": "2016-02-10", "cppv_cp_visit_seen": "Y",
                        "cppv_cp_visit_seen_alone": "N"}],
     [("cp_visit", "2016-02-10")], {"seen_alone": "N"}),
    ("ssd_cla_episodes", [{"clae_cla_episode_id": "CE1", "clae_person_id": "P1",
                           "clae_cla_episode_start_date": "2018-01-01",
                           "clae_cla_episode_start_reason": "S", "clae_cla_id": "CLA1"}],
     [("cla_episode_start", "2018-01-01")], {"code": "S", "episode_id": "CLA1"}),
    ("ssd_cla_placement", [{"clap_cla_placement_id": "PLC1", "clap_person_id": "P1",
                            "clap_cla_placement_start_date": "2018-01-01",
                            "clap_cla_placement_end_date": "2018-04-01",
                            "clap_cla_placement_type": "U1",
                            "clap_cla_placement_change_reason": "ALLEG"}],
     [("placement_end", "2018-04-01"), ("placement_start", "2018-01-01")], {"code": "ALLEG"}),
    ("ssd_legal_status", [{"lega_legal_status_id": "L1", "lega_person_id": "P1",
                           "lega_legal_status": "C2", "lega_legal_status_start_date":
                           "2018-03-01"}],
     [("legal_status_start", "2018-03-01")], {"code": "C2"}),
    ("ssd_cla_visits", [{"clav_cla_visit_id": "LV1", "clav_person_id": "P1",
                         "clav_cla_visit_date": "2018-01-05", "clav_cla_visit_seen": "Y"}],
     [("cla_visit", "2018-01-05")], {"seen": "Y"}),
    ("ssd_cla_health", [{"clah_health_check_id": "H1", "clah_person_id": "P1",
                         "clah_health_check_date": "2018-02-01", "clah_health_check_status":
                         "Refused"}],
     [("health_check", "2018-02-01")], {"code": "Refused"}),
    # Return interview offered and declined: both halves in the outcome of the return.
    ("ssd_missing", [{"miss_table_id": "MI1", "miss_person_id": "P1",
                      "miss_missing_episode_start_date": "2018-05-01",
                      "miss_missing_episode_end_date": "2018-05-02",
                      "miss_missing_episode_type": "Missing", "miss_missing_rhi_offered": "Y",
                      "miss_missing_rhi_accepted": "N"}],
     [("missing_end", "2018-05-02"), ("missing_start", "2018-05-01")],
     {"code": "M", "outcome": "return interview offered; declined"}),
    ("ssd_care_leavers", [{"clea_table_id": "CL1", "clea_person_id": "P1",
                           "clea_care_leaver_latest_contact": "2028-01-01",
                           "clea_care_leaver_in_touch": "NO",
                           "clea_care_leaver_accom_suitable": "2"}],
     [("care_leaver_contact", "2028-01-01")],
     {"code": "NO", "outcome": "accommodation unsuitable"}),
    ("ssd_involvements", [{"invo_involvements_id": "IN1", "invo_person_id": "P1",
                           "invo_professional_id": "W1", "invo_involvement_start_date":
                           "2016-01-04"}],
     [("worker_allocated", "2016-01-04")], {"worker": "W1"}),
    # Each permanence milestone with a date is an event of its own.
    ("ssd_permanence", [{"perm_table_id": "PM1", "perm_person_id": "P1",
                         "perm_adm_decision_date": "2019-01-01",
                         "perm_placement_order_date": "2019-06-01"}],
     [("adoption_decision", "2019-01-01"), ("placement_order", "2019-06-01")], {}),
    ("ext_case_notes", [{"casn_case_note_id": "N1", "casn_person_id": "P1",
                         "casn_note_date": "2016-02-11", "casn_note_type": "Phone call",
                         "casn_note_text": "Mum called <b>upset</b>", "casn_significant_flag":
                         "Y"}],
     [("case_note", "2016-02-11")],
     {"text": "Mum called <b>upset</b>", "flagged_significant": True}),
]


@pytest.mark.parametrize(("table", "rows", "expected", "checks"), CASES,
                         ids=[case[0] for case in CASES])
def test_each_table_stages_to_its_events(table, rows, expected, checks):
    if rows is None:
        person = {**CHILD, "pers_death_date": "2020-01-02"}
        frames = conformed({"ssd_person": [person]})
        shard = stage.Shard(frames)
        events = stage.events(shard, stage.people(shard)).sort_values("event_id",
                                                                      ignore_index=True)
    else:
        events = staged(table, rows)
    got = [(e.event_type, e.event_date) for e in events.itertuples()]
    assert got == [(kind, pd.Timestamp(date)) for kind, date in expected]
    assert (events["child_id"] == "P1").all()
    first = events.iloc[0]
    for column, value in checks.items():
        assert first[column] == value, column


def test_every_table_has_a_stager_and_every_case_is_covered():
    assert set(stage.STAGERS) == {t.name for t in TABLES}
    covered = {case[0] for case in CASES} | {"ssd_family", "ssd_disability",
                                             "ssd_assessment_factors", "ssd_cla_reviews"}
    assert covered == set(stage.STAGERS)


def test_a_plan_start_carries_its_category_and_end():
    # "Neglect" as a description is the code NEG; the start event knows when the plan ended.
    events = staged("ssd_cp_plans", [{"cppl_cp_plan_id": "PL1", "cppl_person_id": "P1",
                                      "cppl_cp_plan_start_date": "2016-02-01",
                                      "cppl_cp_plan_end_date": "2017-01-15",
                                      "cppl_cp_plan_initial_category": "Neglect"}])
    start = events[events["event_type"] == "cp_plan_start"].iloc[0]
    assert (start["code"], start["end_date"]) == ("NEG", pd.Timestamp("2017-01-15"))


def test_a_permanence_record_with_no_date_gives_one_undated_event():
    # It cannot be placed in a chronology; the undated event makes the events suite
    # reject the row with a reason instead of the row vanishing.
    events = staged("ssd_permanence", [{"perm_table_id": "PM1", "perm_person_id": "P1"}])
    assert events["event_type"].tolist() == ["permanence_order"]
    assert events["event_date"].isna().all()


def test_assessment_factors_take_the_assessment_date_and_list_codes():
    # Factors have no date of their own; they are what the assessment found on completion.
    assessment = {"cina_assessment_id": "AS1", "cina_person_id": "P1",
                  "cina_assessment_start_date": "2016-01-05",
                  "cina_assessment_auth_date": "2016-02-10"}
    events = staged("ssd_assessment_factors",
                    [{"cinf_table_id": "F1", "cinf_assessment_id": "AS1",
                      "cinf_assessment_factors_json": '["4B", "3A", "3A"]'},
                     {"cinf_table_id": "F2", "cinf_assessment_id": "AS1",
                      "cinf_assessment_factors_json": '{"24A": "Yes", "1A": "No"}'}],
                    {"ssd_cin_assessments": [assessment]})
    assert events["code"].tolist() == ["3A,4B", "24A"]
    assert (events["event_date"] == pd.Timestamp("2016-02-10")).all()
    assert (events["child_id"] == "P1").all()


def test_cla_reviews_belong_to_the_child_of_their_period_of_care():
    episode = {"clae_cla_episode_id": "CE1", "clae_person_id": "P1", "clae_cla_id": "CLA1",
               "clae_cla_episode_start_date": "2018-01-01"}
    events = staged("ssd_cla_reviews",
                    [{"clar_cla_review_id": "CR1", "clar_cla_id": "CLA1",
                      "clar_cla_review_date": "2018-02-01", "clar_cla_review_cancelled": "N",
                      "clar_cla_review_participation": "PN1"}],
                    {"ssd_cla_episodes": [episode]})
    assert events[["child_id", "event_type", "code"]].values.tolist() == [
        ["P1", "cla_review", "PN1"]]


def test_event_ids_are_deterministic_and_name_their_source():
    rows = [{"cppl_cp_plan_id": "PL1", "cppl_person_id": "P1",
             "cppl_cp_plan_start_date": "2016-02-01", "cppl_cp_plan_end_date": "2017-01-15"}]
    first, second = staged("ssd_cp_plans", rows), staged("ssd_cp_plans", rows)
    assert first["event_id"].tolist() == ["cp_plans:PL1:end", "cp_plans:PL1:primary"]
    pd.testing.assert_frame_equal(first, second)


def test_age_is_counted_from_birth_and_negative_before_it():
    # A pre-birth referral 30 days before the date of birth is at age -30 days.
    events = staged("ssd_cin_episodes", [{"cine_referral_id": "R1", "cine_person_id": "P1",
                                          "cine_referral_date": "2010-04-01"}])
    assert events["age_days"].tolist() == [-30]


def test_people_fold_in_disabilities_and_families():
    frames = conformed({
        "ssd_person": [CHILD],
        "ssd_disability": [{"disa_table_id": "D1", "disa_person_id": "P1",
                            "disa_disability_code": "HEAR"},
                           {"disa_table_id": "D2", "disa_person_id": "P1",
                            "disa_disability_code": "AUT"}],
        "ssd_family": [{"fami_table_id": "F1", "fami_family_id": "FAM9",
                        "fami_person_id": "P1"}],
    })
    people = stage.people(stage.Shard(frames))
    assert people[["child_id", "disabilities", "family_ids"]].values.tolist() == [
        ["P1", "AUT,HEAR", "FAM9"]]
    assert list(people.columns) == list(stage.PEOPLE_COLUMNS)


def test_outcome_flags_read_yes_in_the_ways_ssd_extracts_write_it():
    values = pd.Series(['{"NFA_FLAG": "y", "ADVICE_FLAG": true}', '{"nfa_flag": 1}',
                        '{"NFA_FLAG": "N", "CP_FLAG": 0}', '{"NFA_FLAG": "10"}', "[1]", None],
                       dtype="str")
    outcomes = stage._flag_outcome(values)
    assert outcomes.tolist()[:2] == ["advice given; no further action", "no further action"]
    # No flag says yes ("10" is not 1), a list is not an outcome object, no JSON at all.
    assert outcomes.iloc[2:].isna().all()
