"""Stage: map each validated source table to canonical events.

Every source table has one small function, registered in `STAGERS`, that turns its rows
into events: one row may give several (a CP plan gives a start and an end). Event ids
are `<table>:<record id>:<role>`, so the same record always gives the same ids. Dates
stay the date the thing happened, and `date_precision` says whether a time was
recorded. The canonical columns are listed in `EVENT_COLUMNS` and documented in
docs/events.md.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping

import numpy as np
import pandas as pd

from transforms.frames import lookup, per_distinct
from transforms.ssd import CASE_NOTES_TABLE, PERSON_ID, PERSON_TABLE, TABLES_BY_NAME

EVENT_COLUMNS: dict[str, str] = {
    "child_id": "str",
    "event_id": "str",
    "event_type": "str",
    "event_date": "datetime64[ns]",
    "date_precision": "str",
    "end_date": "datetime64[ns]",
    "source_table": "str",
    "source_id": "str",
    "source_row": "int64",
    "episode_id": "str",
    "code": "str",
    "outcome": "str",
    "detail": "str",
    "seen": "str",
    "seen_alone": "str",
    "flagged_significant": "boolean",
    "text": "str",
    "worker": "str",
    "team": "str",
    "age_days": "Int64",
}

PEOPLE_COLUMNS: dict[str, str] = {
    "child_id": "str",
    "forename": "str",
    "surname": "str",
    "sex": "str",
    "ethnicity": "str",
    "birth_date": "datetime64[ns]",
    "expected_birth_date": "datetime64[ns]",
    "death_date": "datetime64[ns]",
    "upn_unknown": "str",
    "has_ehcp": "str",
    "is_mother": "str",
    "nationality": "str",
    "disabilities": "str",
    "family_ids": "str",
}

# Plain-English outcome of each *_FLAG key in the SSD outcome JSON fields.
OUTCOME_FLAGS: dict[str, str] = {
    "NEW_REFERRAL_FLAG": "new referral",
    "EXISTING_REFERRAL_FLAG": "linked to an open referral",
    "CP_ENQUIRY_FLAG": "child protection enquiry",
    "SINGLE_ASSESSMENT_FLAG": "assessment",
    "STRATEGY_DISCUSSION_FLAG": "strategy discussion",
    "CP_CONFERENCE_FLAG": "child protection conference",
    "CP_FLAG": "child protection plan",
    "CP_TRANSFER_IN_FLAG": "child protection transfer in",
    "OLA_CP_FLAG": "plan held by another local authority",
    "CLA_REQUEST_FLAG": "request to become looked after",
    "LEGAL_ACTION_FLAG": "legal action",
    "PROV_OF_SERVICES_FLAG": "services provided",
    "PROV_OF_SB_CARE_FLAG": "short-break care provided",
    "SPECIALIST_ASSESSMENT_FLAG": "specialist assessment",
    "REFERRAL_TO_OTHER_AGENCY_FLAG": "referred to another agency",
    "PRIVATE_FOSTERING_FLAG": "private fostering",
    "NON_AGENCY_ADOPTION_FLAG": "non-agency adoption",
    "CARE_LEAVER_FLAG": "care leaver",
    "MISSING_FLAG": "missing",
    "MONITOR_FLAG": "monitoring",
    "ADVICE_FLAG": "advice given",
    "NFA_S47_END_FLAG": "no further action after the S47 enquiry",
    "NFA_CONTINUE_SINGLE_FLAG": "no further action under S47; assessment continues",
    "NFA_FLAG": "no further action",
    "OTHER_ACTIONS_FLAG": "other actions",
    "OTHER_OUTCOMES_EXIST_FLAG": "other outcomes",
}

PERMANENCE_MILESTONES: dict[str, str] = {
    "perm_adm_decision_date": "adoption_decision",
    "perm_ffa_cp_decision_date": "fostering_for_adoption_decision",
    "perm_placement_order_date": "placement_order",
    "perm_placed_for_adoption_date": "placed_for_adoption",
    "perm_matched_date": "matched_with_adopters",
    "perm_placed_ffa_cp_date": "placed_fostering_for_adoption",
    "perm_decision_reversed_date": "adoption_decision_reversed",
    "perm_placed_foster_carer_date": "placed_with_foster_carer",
    "perm_permanence_order_date": "permanence_order",
}


class Shard:
    """The validated source tables of one shard, by table name."""

    def __init__(self, tables: Mapping[str, pd.DataFrame]) -> None:
        self.tables = tables

    def get(self, name: str) -> pd.DataFrame | None:
        return self.tables.get(name)


# How SSD outcome and factor JSON say "yes".
_YES = frozenset({"Y", "YES", "1", "TRUE"})


def _parsed(text: str) -> object:
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return None  # the raw suites reject rows whose JSON cannot be read


def _yes(value: object) -> bool:
    """A flag's value says yes: Y, YES, 1 or TRUE in any case, JSON true, or the number 1."""
    if isinstance(value, bool) or isinstance(value, int | float):
        return value == 1
    return str(value).strip().upper() in _YES


def _outcome_of(text: str) -> str | None:
    """Outcomes of a flat SSD outcome object such as {"NFA_FLAG": "Y", "CP_FLAG": "N"}."""
    parsed = _parsed(text)
    if not isinstance(parsed, dict):
        return None
    said = {str(key).strip().upper() for key, value in parsed.items() if _yes(value)}
    return "; ".join(label for key, label in OUTCOME_FLAGS.items() if key in said) or None


def _flag_outcome(values: pd.Series) -> pd.Series:
    """Plain-English outcomes from an SSD outcome JSON, in the order the flags are listed."""
    return per_distinct(values, lambda distinct: distinct.map(_outcome_of).astype("str"))


def _events(frame: pd.DataFrame, table: str, role: str, event_type: str | pd.Series,
            date: str, **columns: object) -> pd.DataFrame:
    """Events of one role from the rows of `frame` that have a value in `date`."""
    contract = TABLES_BY_NAME[table]
    rows = frame if role == "primary" else frame[frame[date].notna()]
    short = table.removeprefix("ssd_")
    data: dict[str, object] = {
        "child_id": rows[contract.child_column],
        "event_id": short + ":" + rows[contract.key].astype("str") + ":" + role,
        "event_type": event_type if isinstance(event_type, str) else event_type.loc[rows.index],
        "event_date": rows[date],
        "source_table": table,
        "source_id": rows[contract.key],
        "source_row": rows["_row"],
    }
    for name, value in columns.items():
        if isinstance(value, str) and value in rows.columns:
            data[name] = rows[value]
        elif isinstance(value, pd.Series):
            data[name] = value.loc[rows.index]
        else:
            data[name] = value
    return pd.DataFrame(data, index=rows.index)


def _person(frame: pd.DataFrame, shard: Shard) -> list[pd.DataFrame]:
    return [
        _events(frame, PERSON_TABLE, "birth", "birth", "pers_dob"),
        _events(frame, PERSON_TABLE, "death", "death", "pers_death_date"),
    ]


def _address(frame: pd.DataFrame, shard: Shard) -> list[pd.DataFrame]:
    t = "ssd_address"
    common = {"code": "addr_address_type", "detail": "addr_address_postcode"}
    return [
        _events(frame, t, "primary", "address_start", "addr_address_start_date",
                end_date="addr_address_end_date", **common),
        _events(frame, t, "end", "address_end", "addr_address_end_date", **common),
    ]


def _immigration(frame: pd.DataFrame, shard: Shard) -> list[pd.DataFrame]:
    t = "ssd_immigration_status"
    return [
        _events(frame, t, "primary", "immigration_status_start",
                "immi_immigration_status_start_date", end_date="immi_immigration_status_end_date",
                detail="immi_immigration_status"),
        _events(frame, t, "end", "immigration_status_end", "immi_immigration_status_end_date",
                detail="immi_immigration_status"),
    ]


def _mother(frame: pd.DataFrame, shard: Shard) -> list[pd.DataFrame]:
    return [_events(frame, "ssd_mother", "primary", "became_parent", "moth_childs_dob",
                    detail="moth_childs_person_id")]


def _contacts(frame: pd.DataFrame, shard: Shard) -> list[pd.DataFrame]:
    return [_events(frame, "ssd_contacts", "primary", "contact", "cont_contact_date",
                    code="cont_contact_source_code", detail="cont_contact_source_desc",
                    outcome=_flag_outcome(frame["cont_contact_outcome_json"]))]


def _early_help(frame: pd.DataFrame, shard: Shard) -> list[pd.DataFrame]:
    t = "ssd_early_help_episodes"
    common = {"detail": "earl_episode_reason", "worker": "earl_episode_worker_id",
              "team": "earl_episode_organisation", "episode_id": "earl_episode_id"}
    return [
        _events(frame, t, "primary", "early_help_start", "earl_episode_start_date",
                end_date="earl_episode_end_date", **common),
        _events(frame, t, "end", "early_help_end", "earl_episode_end_date",
                outcome="earl_episode_end_reason", **common),
    ]


def _cin_episodes(frame: pd.DataFrame, shard: Shard) -> list[pd.DataFrame]:
    t = "ssd_cin_episodes"
    outcome = _flag_outcome(frame["cine_referral_outcome_json"])
    outcome = outcome.fillna(frame["cine_referral_nfa"].map({"Y": "no further action"}))
    common = {"episode_id": "cine_referral_id", "worker": "cine_referral_worker_id",
              "team": "cine_referral_team"}
    return [
        _events(frame, t, "primary", "referral", "cine_referral_date",
                end_date="cine_close_date", code="cine_cin_primary_need_code",
                detail=frame["cine_referral_source_desc"].fillna(
                    frame["cine_referral_source_code"]), outcome=outcome, **common),
        _events(frame, t, "close", "case_closed", "cine_close_date",
                code="cine_close_reason", **common),
    ]


def _assessments(frame: pd.DataFrame, shard: Shard) -> list[pd.DataFrame]:
    t = "ssd_cin_assessments"
    outcome = _flag_outcome(frame["cina_assessment_outcome_json"])
    outcome = outcome.fillna(frame["cina_assessment_outcome_nfa"].map({"Y": "no further action"}))
    common = {"episode_id": "cina_referral_id", "worker": "cina_assessment_worker_id",
              "team": "cina_assessment_team", "seen": "cina_assessment_child_seen"}
    return [
        _events(frame, t, "primary", "assessment_start", "cina_assessment_start_date",
                end_date="cina_assessment_auth_date", **common),
        _events(frame, t, "completed", "assessment_completed", "cina_assessment_auth_date",
                outcome=outcome, **common),
    ]


def _factor_codes(text: str) -> str | None:
    """Factor codes from either SSD shape: ["1A", "3B"] or {"1A": "Yes", "3B": "No"}."""
    parsed = _parsed(text)
    if isinstance(parsed, dict):
        codes = [k for k, v in parsed.items() if _yes(v)]
    elif isinstance(parsed, list):
        codes = [str(c).strip() for c in parsed]
    else:
        return None
    return ",".join(sorted(set(c for c in codes if c))) or None


def _assessment_factors(frame: pd.DataFrame, shard: Shard) -> list[pd.DataFrame]:
    # Factors have no date of their own: they are what the assessment found, so they
    # take the assessment's completion date (or its start while it is still open).
    assessments = shard.get("ssd_cin_assessments")
    if assessments is None:
        dates = pd.Series(pd.NaT, index=frame.index, dtype="datetime64[ns]")
    else:
        by_id = assessments.drop_duplicates("cina_assessment_id").set_index("cina_assessment_id")
        when = by_id["cina_assessment_auth_date"].fillna(by_id["cina_assessment_start_date"])
        dates = lookup(frame["cinf_assessment_id"], when.astype("datetime64[ns]"))
    codes = per_distinct(frame["cinf_assessment_factors_json"],
                         lambda distinct: distinct.map(_factor_codes).astype("str"))
    frame = frame.assign(_factor_date=dates)
    return [_events(frame, "ssd_assessment_factors", "primary", "assessment_factors",
                    "_factor_date", code=codes, episode_id="cinf_assessment_id")]


def _cin_plans(frame: pd.DataFrame, shard: Shard) -> list[pd.DataFrame]:
    t = "ssd_cin_plans"
    common = {"episode_id": "cinp_referral_id", "worker": "cinp_cin_plan_worker_id",
              "team": "cinp_cin_plan_team"}
    return [
        _events(frame, t, "primary", "cin_plan_start", "cinp_cin_plan_start_date",
                end_date="cinp_cin_plan_end_date", **common),
        _events(frame, t, "end", "cin_plan_end", "cinp_cin_plan_end_date", **common),
    ]


def _visits(table: str, event_type: str, prefix: str) -> Callable:
    def stage(frame: pd.DataFrame, shard: Shard) -> list[pd.DataFrame]:
        return [_events(frame, table, "primary", event_type, f"{prefix}_visit_date",
                        seen=f"{prefix}_visit_seen", seen_alone=f"{prefix}_visit_seen_alone")]
    return stage


def _s47(frame: pd.DataFrame, shard: Shard) -> list[pd.DataFrame]:
    t = "ssd_s47_enquiry"
    outcome = _flag_outcome(frame["s47e_s47_outcome_json"])
    outcome = outcome.fillna(frame["s47e_s47_nfa"].map({"Y": "no further action"}))
    common = {"episode_id": "s47e_referral_id", "worker": "s47e_s47_completed_by_worker_id",
              "team": "s47e_s47_completed_by_team"}
    return [
        _events(frame, t, "primary", "s47_start", "s47e_s47_start_date",
                end_date="s47e_s47_end_date", **common),
        _events(frame, t, "end", "s47_end", "s47e_s47_end_date", outcome=outcome, **common),
    ]


def _icpc(frame: pd.DataFrame, shard: Shard) -> list[pd.DataFrame]:
    outcome = _flag_outcome(frame["icpc_icpc_outcome_json"])
    outcome = outcome.fillna(frame["icpc_icpc_outcome_cp_flag"].map(
        {"Y": "child protection plan", "N": "no child protection plan"}))
    return [_events(frame, "ssd_initial_cp_conference", "primary", "initial_cp_conference",
                    "icpc_icpc_date", outcome=outcome, episode_id="icpc_referral_id",
                    worker="icpc_icpc_worker_id", team="icpc_icpc_team")]


def _cp_plans(frame: pd.DataFrame, shard: Shard) -> list[pd.DataFrame]:
    t = "ssd_cp_plans"
    return [
        _events(frame, t, "primary", "cp_plan_start", "cppl_cp_plan_start_date",
                end_date="cppl_cp_plan_end_date", code="cppl_cp_plan_initial_category",
                episode_id="cppl_cp_plan_id"),
        _events(frame, t, "end", "cp_plan_end", "cppl_cp_plan_end_date",
                code="cppl_cp_plan_latest_category", episode_id="cppl_cp_plan_id"),
    ]


def _cp_reviews(frame: pd.DataFrame, shard: Shard) -> list[pd.DataFrame]:
    outcome = frame["cppr_cp_review_outcome_continue_cp"].map(
        {"Y": "plan to continue", "N": "plan to end"})
    return [_events(frame, "ssd_cp_reviews", "primary", "cp_review", "cppr_cp_review_date",
                    code="cppr_cp_review_participation", outcome=outcome,
                    episode_id="cppr_cp_plan_id")]


def _cla_episodes(frame: pd.DataFrame, shard: Shard) -> list[pd.DataFrame]:
    t = "ssd_cla_episodes"
    return [
        _events(frame, t, "primary", "cla_episode_start", "clae_cla_episode_start_date",
                end_date="clae_cla_episode_ceased_date", code="clae_cla_episode_start_reason",
                detail="clae_cla_primary_need_code", episode_id="clae_cla_id"),
        _events(frame, t, "end", "cla_episode_end", "clae_cla_episode_ceased_date",
                code="clae_cla_episode_ceased_reason", episode_id="clae_cla_id"),
    ]


def _placements(frame: pd.DataFrame, shard: Shard) -> list[pd.DataFrame]:
    t = "ssd_cla_placement"
    return [
        _events(frame, t, "primary", "placement_start", "clap_cla_placement_start_date",
                end_date="clap_cla_placement_end_date", code="clap_cla_placement_type",
                detail="clap_cla_placement_provider", episode_id="clap_cla_id"),
        _events(frame, t, "end", "placement_end", "clap_cla_placement_end_date",
                code="clap_cla_placement_change_reason", episode_id="clap_cla_id"),
    ]


def _legal_status(frame: pd.DataFrame, shard: Shard) -> list[pd.DataFrame]:
    t = "ssd_legal_status"
    return [
        _events(frame, t, "primary", "legal_status_start", "lega_legal_status_start_date",
                end_date="lega_legal_status_end_date", code="lega_legal_status"),
        _events(frame, t, "end", "legal_status_end", "lega_legal_status_end_date",
                code="lega_legal_status"),
    ]


def _cla_reviews(frame: pd.DataFrame, shard: Shard) -> list[pd.DataFrame]:
    outcome = frame["clar_cla_review_cancelled"].map({"Y": "cancelled"})
    return [_events(frame, "ssd_cla_reviews", "primary", "cla_review", "clar_cla_review_date",
                    code="clar_cla_review_participation", outcome=outcome,
                    episode_id="clar_cla_id")]


def _health(frame: pd.DataFrame, shard: Shard) -> list[pd.DataFrame]:
    return [_events(frame, "ssd_cla_health", "primary", "health_check", "clah_health_check_date",
                    code="clah_health_check_status", detail="clah_health_check_type")]


def _missing(frame: pd.DataFrame, shard: Shard) -> list[pd.DataFrame]:
    t = "ssd_missing"
    offered = frame["miss_missing_rhi_offered"].map({"Y": "return interview offered",
                                                     "N": "no return interview offered"})
    accepted = frame["miss_missing_rhi_accepted"].map({"Y": "accepted", "N": "declined"})
    outcome = (offered + ("; " + accepted).fillna("")).fillna(offered)
    return [
        _events(frame, t, "primary", "missing_start", "miss_missing_episode_start_date",
                end_date="miss_missing_episode_end_date", code="miss_missing_episode_type",
                episode_id="miss_table_id"),
        _events(frame, t, "end", "missing_end", "miss_missing_episode_end_date",
                code="miss_missing_episode_type", outcome=outcome, episode_id="miss_table_id"),
    ]


def _care_leavers(frame: pd.DataFrame, shard: Shard) -> list[pd.DataFrame]:
    suitable = frame["clea_care_leaver_accom_suitable"].map(
        {"1": "accommodation suitable", "2": "accommodation unsuitable"})
    return [_events(frame, "ssd_care_leavers", "primary", "care_leaver_contact",
                    "clea_care_leaver_latest_contact", code="clea_care_leaver_in_touch",
                    detail="clea_care_leaver_accommodation", outcome=suitable,
                    worker="clea_care_leaver_worker_id", team="clea_care_leaver_allocated_team")]


def _involvements(frame: pd.DataFrame, shard: Shard) -> list[pd.DataFrame]:
    t = "ssd_involvements"
    common = {"worker": "invo_professional_id", "team": "invo_professional_team",
              "detail": "invo_professional_role_id", "episode_id": "invo_referral_id"}
    return [
        # The SSD change reason says why this worker took over ("child requested change
        # from previous social worker"), so it belongs to the allocation, not its end.
        _events(frame, t, "primary", "worker_allocated", "invo_involvement_start_date",
                end_date="invo_involvement_end_date", code="invo_worker_change_reason",
                **common),
        _events(frame, t, "end", "worker_ended", "invo_involvement_end_date", **common),
    ]


def _permanence(frame: pd.DataFrame, shard: Shard) -> list[pd.DataFrame]:
    common = {"code": "perm_permanence_order_type", "episode_id": "perm_cla_id"}
    milestones = [_events(frame, "ssd_permanence", milestone, milestone, column, **common)
                  for column, milestone in PERMANENCE_MILESTONES.items()]
    # A record with no milestone dated says nothing that can be placed: it gives one
    # undated event, which the events suite rejects with its reason.
    undated = frame[frame[list(PERMANENCE_MILESTONES)].isna().all(axis=1)]
    return [*milestones, _events(undated, "ssd_permanence", "primary", "permanence_order",
                                 "perm_permanence_order_date", **common)]


def _case_notes(frame: pd.DataFrame, shard: Shard) -> list[pd.DataFrame]:
    significant = per_distinct(frame["casn_significant_flag"], lambda flag: flag.map(
        {"Y": True, "N": False}).astype("boolean"))
    return [_events(frame, CASE_NOTES_TABLE, "primary", "case_note", "casn_note_date",
                    code="casn_note_type", text="casn_note_text", worker="casn_author",
                    team="casn_team", flagged_significant=significant)]


def _no_events(frame: pd.DataFrame, shard: Shard) -> list[pd.DataFrame]:
    """Tables that hold facts about the child rather than dated events (see `people`)."""
    return []


STAGERS: dict[str, Callable[[pd.DataFrame, Shard], list[pd.DataFrame]]] = {
    "ssd_person": _person,
    "ssd_family": _no_events,
    "ssd_address": _address,
    "ssd_disability": _no_events,
    "ssd_immigration_status": _immigration,
    "ssd_mother": _mother,
    "ssd_contacts": _contacts,
    "ssd_early_help_episodes": _early_help,
    "ssd_cin_episodes": _cin_episodes,
    "ssd_cin_assessments": _assessments,
    "ssd_assessment_factors": _assessment_factors,
    "ssd_cin_plans": _cin_plans,
    "ssd_cin_visits": _visits("ssd_cin_visits", "cin_visit", "cinv_cin"),
    "ssd_s47_enquiry": _s47,
    "ssd_initial_cp_conference": _icpc,
    "ssd_cp_plans": _cp_plans,
    "ssd_cp_reviews": _cp_reviews,
    "ssd_cp_visits": _visits("ssd_cp_visits", "cp_visit", "cppv_cp"),
    "ssd_cla_episodes": _cla_episodes,
    "ssd_cla_placement": _placements,
    "ssd_legal_status": _legal_status,
    "ssd_cla_reviews": _cla_reviews,
    "ssd_cla_visits": _visits("ssd_cla_visits", "cla_visit", "clav_cla"),
    "ssd_cla_health": _health,
    "ssd_missing": _missing,
    "ssd_care_leavers": _care_leavers,
    "ssd_involvements": _involvements,
    "ssd_permanence": _permanence,
    CASE_NOTES_TABLE: _case_notes,
}

EVENT_TYPES: tuple[str, ...] = (
    "birth", "death", "address_start", "address_end", "immigration_status_start",
    "immigration_status_end", "became_parent", "contact", "early_help_start", "early_help_end",
    "referral", "case_closed", "assessment_start", "assessment_completed", "assessment_factors",
    "cin_plan_start", "cin_plan_end", "cin_visit", "s47_start", "s47_end",
    "initial_cp_conference", "cp_plan_start", "cp_plan_end", "cp_review", "cp_visit",
    "cla_episode_start", "cla_episode_end", "placement_start", "placement_end",
    "legal_status_start", "legal_status_end", "cla_review", "cla_visit", "health_check",
    "missing_start", "missing_end", "care_leaver_contact", "worker_allocated", "worker_ended",
    *PERMANENCE_MILESTONES.values(), "case_note",
)


# Start events of things that last: their `end_date` says when it ended, and an empty
# one means it is still going on (for other events `end_date` is always empty).
LASTING_EVENT_TYPES: tuple[str, ...] = (
    "address_start", "immigration_status_start", "early_help_start", "referral",
    "assessment_start", "cin_plan_start", "s47_start", "cp_plan_start", "cla_episode_start",
    "placement_start", "legal_status_start", "missing_start", "worker_allocated",
)


def _typed(frame: pd.DataFrame, columns: dict[str, str]) -> pd.DataFrame:
    full = frame.reindex(columns=list(columns))
    return full.astype(columns).reset_index(drop=True)


def source_records(events: pd.DataFrame) -> np.ndarray:
    """One integer per source record behind each event: its table and its row in the
    extract (the start and end events of one record share it)."""
    table = pd.factorize(events["source_table"])[0].astype(np.int64)
    # 64 tables at most: the SSD contract has 29.
    return events["source_row"].to_numpy().astype(np.int64) * 64 + table


def births_of(people: pd.DataFrame) -> pd.Series:
    """Birth (or expected birth) date by child id."""
    birth = people["birth_date"].fillna(people["expected_birth_date"])
    return pd.Series(birth.to_numpy(), index=people["child_id"].to_numpy(),
                     dtype="datetime64[ns]")


def events(shard: Shard, people: pd.DataFrame) -> pd.DataFrame:
    """Canonical events of one shard's validated tables, in source then event-id order."""
    parts: list[pd.DataFrame] = []
    for name, frame in shard.tables.items():
        if frame.empty:
            continue
        parts += [p for p in STAGERS[name](frame, shard) if not p.empty]
    if not parts:
        return _typed(pd.DataFrame(), EVENT_COLUMNS)
    staged = pd.concat(parts, ignore_index=True)
    dates = staged["event_date"].astype("datetime64[ns]")
    time_of_day = dates - dates.dt.normalize()
    birth = lookup(staged["child_id"], births_of(people))
    staged = staged.assign(
        event_date=dates,
        date_precision=np.where(time_of_day > pd.Timedelta(0), "time", "day"),
        age_days=(dates.dt.normalize() - birth).dt.days.astype("Int64"),
    )
    return _typed(staged, EVENT_COLUMNS)


def _joined(frame: pd.DataFrame | None, child: str, column: str) -> pd.Series:
    if frame is None or frame.empty:
        return pd.Series(dtype="str")
    values = frame[[child, column]].dropna().drop_duplicates().sort_values([child, column])
    return values.groupby(child)[column].agg(",".join).astype("str")


def people(shard: Shard) -> pd.DataFrame:
    """One row per child of the shard: the facts a chronology header shows."""
    person = shard.get(PERSON_TABLE)
    if person is None or person.empty:
        return _typed(pd.DataFrame(), PEOPLE_COLUMNS)
    facts = pd.DataFrame({
        "child_id": person[PERSON_ID],
        "forename": person["pers_forename"],
        "surname": person["pers_surname"],
        "sex": person["pers_sex"],
        "ethnicity": person["pers_ethnicity"],
        "birth_date": person["pers_dob"],
        "expected_birth_date": person["pers_expected_dob"],
        "death_date": person["pers_death_date"],
        "upn_unknown": person["pers_upn_unknown"],
        "has_ehcp": person["pers_send_flag"],
        "is_mother": person["pers_is_mother"],
        "nationality": person["pers_nationality"],
    })
    facts["disabilities"] = lookup(facts["child_id"], _joined(
        shard.get("ssd_disability"), "disa_person_id", "disa_disability_code"))
    facts["family_ids"] = lookup(facts["child_id"], _joined(
        shard.get("ssd_family"), "fami_person_id", "fami_family_id"))
    return _typed(facts.sort_values("child_id"), PEOPLE_COLUMNS)
