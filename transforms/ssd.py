"""The source contract: the Standard Safeguarding Dataset (SSD) tables and columns we read.

One place says, for every source table, which columns the pipeline needs and what
each one must hold: its primary key, whose child the row belongs to, the dates that
place it in the child's life, the code sets, the Y/N flags, the JSON fields and the
free text. Extraction reads exactly these columns, conforming and staging interpret
them, the expectation suites in ``expectations/`` are generated from them, and the
synthetic generator in ``fixtures/`` writes values that satisfy them.

Names and code sets come from the SSD table definitions (data-to-insight
ssd-data-model, ``data/objects/``); ``ext_case_notes`` is this project's own extension.
"""

from __future__ import annotations

from dataclasses import dataclass, field

PERSON_TABLE = "ssd_person"
# Column added to tables without a person column: the child of the row they belong to.
OWNER_PERSON = "_owner_person_id"
PERSON_ID = "pers_person_id"
CASE_NOTES_TABLE = "ext_case_notes"


@dataclass(frozen=True)
class CodeSet:
    """Accepted codes of one column, with the descriptions some councils send instead."""

    codes: tuple[str, ...]
    aliases: dict[str, str] = field(default_factory=dict)
    # A value starting with one of these prefixes maps to the code (e.g. "Multiple: NEG, EMO").
    prefixes: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Parent:
    """A foreign key whose target must exist for the row to make sense."""

    column: str
    table: str
    key: str


@dataclass(frozen=True)
class SourceTable:
    name: str
    key: str
    # Column holding the child's person id; None when the child is found through `owner`.
    person: str | None
    columns: tuple[str, ...]
    # For tables without a person column: the parent whose person id the row takes.
    owner: Parent | None = None
    parents: tuple[Parent, ...] = ()
    # Dates that place the row in the child's life: checked against birth and "as of".
    event_dates: tuple[str, ...] = ()
    # (start, end) pairs where the end may not come before the start.
    periods: tuple[tuple[str, str], ...] = ()
    # Other date columns that are read and parsed but not range-checked (due dates, targets).
    other_dates: tuple[str, ...] = ()
    codes: dict[str, CodeSet] = field(default_factory=dict)
    flags: tuple[str, ...] = ()
    json: tuple[str, ...] = ()
    text: tuple[str, ...] = ()
    # False for tables that a plain SSD deployment does not have.
    required: bool = True

    @property
    def dates(self) -> tuple[str, ...]:
        return self.event_dates + self.other_dates

    @property
    def child_column(self) -> str:
        """The column that names the child once owners are resolved (see conform)."""
        return self.person or OWNER_PERSON


# ---------------------------------------------------------------- code sets (England)

SEX = CodeSet(("M", "F", "U"), {"Male": "M", "Female": "F", "Unknown": "U"})
ETHNICITY = CodeSet(
    ("WBRI", "WIRI", "WOTH", "WIRT", "WROM", "MWBC", "MWBA", "MWAS", "MOTH", "AIND", "APKN",
     "ABAN", "CNHE", "AOTH", "BCRB", "BAFR", "BOTH", "OOTH", "REFU", "NOBT"),
)
DISABILITY = CodeSet(
    ("NONE", "MOB", "HAND", "PC", "INC", "COMM", "LD", "HEAR", "VIS", "BEH", "CON", "AUT", "DDA"),
)
REFERRAL_SOURCE = CodeSet(
    ("1A", "1B", "1C", "1D", "2A", "2B", "3A", "3B", "3C", "3D", "3E", "3F", "4", "5A", "5B",
     "5C", "5D", "6", "7", "8", "9", "10"),
)
CIN_PRIMARY_NEED = CodeSet(tuple(f"N{i}" for i in range(10)))
CIN_CLOSE_REASON = CodeSet(tuple(f"RC{i}" for i in range(1, 10)))
CP_CATEGORY = CodeSet(
    ("NEG", "PHY", "SAB", "EMO", "MUL"),
    {"Neglect": "NEG", "Physical abuse": "PHY", "Sexual abuse": "SAB", "Emotional abuse": "EMO",
     "Multiple": "MUL"},
    {"Multiple": "MUL"},
)
PARTICIPATION = CodeSet(tuple(f"PN{i}" for i in range(8)))
CLA_START_REASON = CodeSet(("S", "L", "P", "T", "B", "U"))
CLA_CEASED_REASON = CodeSet(
    ("X1", "E11", "E12", "E2", "E3", "E4A", "E4B", "E13", "E41", "E45", "E46", "E47", "E48",
     "E5", "E6", "E7", "E9", "E14", "E15", "E16", "E17", "E8"),
)
CLA_PRIMARY_NEED = CodeSet(tuple(f"N{i}" for i in range(1, 9)))
PLACEMENT_TYPE = CodeSet(
    ("A3", "A4", "A5", "A6", "H5", "K1", "K2", "P1", "P2", "P3", "R1", "R2", "R3", "R5", "S1",
     "T0", "T1", "T2", "T3", "T4", "U1", "U2", "U3", "U4", "U5", "U6", "Z1"),
)
PLACEMENT_CHANGE_REASON = CodeSet(
    ("CARPL", "CLOSE", "ALLEG", "STAND", "APPRR", "CREQB", "CREQO", "CHILD", "LAREQ", "PLACE",
     "CUSTOD", "OTHER"),
)
LEGAL_STATUS = CodeSet(
    ("C1", "C2", "D1", "E1", "V2", "V3", "V4", "L1", "L2", "L3", "J1", "J2", "J3"),
)
MISSING_TYPE = CodeSet(("M", "A"), {"Missing": "M", "Away": "A"})
HEALTH_CHECK_STATUS = CodeSet(("Planned", "Refused", "Cancelled", "Completed"))
CARE_LEAVER_IN_TOUCH = CodeSet(("YES", "NO", "DIED", "REFU", "NREQ", "RHOM"))
CARE_LEAVER_ACCOMMODATION = CodeSet(
    ("B", "C", "D", "E", "G", "H", "K", "R", "S", "T", "U", "V", "W", "X", "Y", "Z"),
)
ACCOMMODATION_SUITABLE = CodeSet(("1", "2"))
WORKER_CHANGE_REASON = CodeSet(
    ("MANAGE", "FCONTA", "LEFTRL", "ORGRST", "TSPROC", "ABSENC", "CHCHAN", "PCCHAN", "SWDIED",
     "OTHERS"),
)

# Spellings of yes and no that real extracts use; anything else is an unknown value.
FLAG_VALUES: dict[str, str] = {
    "Y": "Y", "YES": "Y", "1": "Y", "TRUE": "Y", "T": "Y",
    "N": "N", "NO": "N", "0": "N", "FALSE": "N", "F": "N",
    "NA": "NA", "N/A": "NA",
}

_REFERRAL = ("ssd_cin_episodes", "cine_referral_id")

TABLES: tuple[SourceTable, ...] = (
    SourceTable(
        "ssd_person", "pers_person_id", "pers_person_id",
        ("pers_person_id", "pers_forename", "pers_surname", "pers_sex", "pers_ethnicity",
         "pers_dob", "pers_expected_dob", "pers_death_date", "pers_upn_unknown",
         "pers_send_flag", "pers_is_mother", "pers_nationality"),
        event_dates=("pers_dob", "pers_death_date"),
        periods=(("pers_dob", "pers_death_date"),),
        other_dates=("pers_expected_dob",),
        codes={"pers_sex": SEX, "pers_ethnicity": ETHNICITY},
        flags=("pers_send_flag", "pers_is_mother"),
    ),
    SourceTable(
        # The spec marks fami_family_id as the key, but a family id is shared by its members;
        # fami_table_id is the one that names a row.
        "ssd_family", "fami_table_id", "fami_person_id",
        ("fami_family_id", "fami_table_id", "fami_person_id"),
    ),
    SourceTable(
        "ssd_address", "addr_table_id", "addr_person_id",
        ("addr_table_id", "addr_person_id", "addr_address_type", "addr_address_start_date",
         "addr_address_end_date", "addr_address_postcode", "addr_address_json"),
        event_dates=("addr_address_start_date", "addr_address_end_date"),
        periods=(("addr_address_start_date", "addr_address_end_date"),),
        json=("addr_address_json",),
    ),
    SourceTable(
        "ssd_disability", "disa_table_id", "disa_person_id",
        ("disa_table_id", "disa_person_id", "disa_disability_code"),
        codes={"disa_disability_code": DISABILITY},
    ),
    SourceTable(
        "ssd_immigration_status", "immi_immigration_status_id", "immi_person_id",
        ("immi_immigration_status_id", "immi_person_id", "immi_immigration_status",
         "immi_immigration_status_start_date", "immi_immigration_status_end_date"),
        event_dates=("immi_immigration_status_start_date", "immi_immigration_status_end_date"),
        periods=(("immi_immigration_status_start_date", "immi_immigration_status_end_date"),),
    ),
    SourceTable(
        "ssd_mother", "moth_table_id", "moth_person_id",
        ("moth_table_id", "moth_person_id", "moth_childs_person_id", "moth_childs_dob"),
        event_dates=("moth_childs_dob",),
    ),
    SourceTable(
        "ssd_contacts", "cont_contact_id", "cont_person_id",
        ("cont_contact_id", "cont_person_id", "cont_contact_date", "cont_contact_source_code",
         "cont_contact_source_desc", "cont_contact_outcome_json"),
        event_dates=("cont_contact_date",),
        codes={"cont_contact_source_code": REFERRAL_SOURCE},
        json=("cont_contact_outcome_json",),
    ),
    SourceTable(
        "ssd_early_help_episodes", "earl_episode_id", "earl_person_id",
        ("earl_episode_id", "earl_person_id", "earl_episode_start_date", "earl_episode_end_date",
         "earl_episode_reason", "earl_episode_end_reason", "earl_episode_organisation",
         "earl_episode_worker_id"),
        event_dates=("earl_episode_start_date", "earl_episode_end_date"),
        periods=(("earl_episode_start_date", "earl_episode_end_date"),),
    ),
    SourceTable(
        "ssd_cin_episodes", "cine_referral_id", "cine_person_id",
        ("cine_referral_id", "cine_person_id", "cine_referral_date", "cine_cin_primary_need_code",
         "cine_referral_source_code", "cine_referral_source_desc", "cine_referral_outcome_json",
         "cine_referral_nfa", "cine_close_reason", "cine_close_date", "cine_referral_team",
         "cine_referral_worker_id"),
        event_dates=("cine_referral_date", "cine_close_date"),
        periods=(("cine_referral_date", "cine_close_date"),),
        codes={"cine_cin_primary_need_code": CIN_PRIMARY_NEED,
               "cine_referral_source_code": REFERRAL_SOURCE,
               "cine_close_reason": CIN_CLOSE_REASON},
        flags=("cine_referral_nfa",),
        json=("cine_referral_outcome_json",),
    ),
    SourceTable(
        "ssd_cin_assessments", "cina_assessment_id", "cina_person_id",
        ("cina_assessment_id", "cina_person_id", "cina_referral_id", "cina_assessment_start_date",
         "cina_assessment_child_seen", "cina_assessment_auth_date", "cina_assessment_outcome_json",
         "cina_assessment_outcome_nfa", "cina_assessment_team", "cina_assessment_worker_id"),
        parents=(Parent("cina_referral_id", *_REFERRAL),),
        event_dates=("cina_assessment_start_date", "cina_assessment_auth_date"),
        periods=(("cina_assessment_start_date", "cina_assessment_auth_date"),),
        flags=("cina_assessment_child_seen", "cina_assessment_outcome_nfa"),
        json=("cina_assessment_outcome_json",),
    ),
    SourceTable(
        "ssd_assessment_factors", "cinf_table_id", None,
        ("cinf_table_id", "cinf_assessment_id", "cinf_assessment_factors_json"),
        owner=Parent("cinf_assessment_id", "ssd_cin_assessments", "cina_assessment_id"),
        json=("cinf_assessment_factors_json",),
    ),
    SourceTable(
        "ssd_cin_plans", "cinp_cin_plan_id", "cinp_person_id",
        ("cinp_cin_plan_id", "cinp_referral_id", "cinp_person_id", "cinp_cin_plan_start_date",
         "cinp_cin_plan_end_date", "cinp_cin_plan_team", "cinp_cin_plan_worker_id"),
        parents=(Parent("cinp_referral_id", *_REFERRAL),),
        event_dates=("cinp_cin_plan_start_date", "cinp_cin_plan_end_date"),
        periods=(("cinp_cin_plan_start_date", "cinp_cin_plan_end_date"),),
    ),
    SourceTable(
        "ssd_cin_visits", "cinv_cin_visit_id", "cinv_person_id",
        ("cinv_cin_visit_id", "cinv_person_id", "cinv_cin_visit_date", "cinv_cin_visit_seen",
         "cinv_cin_visit_seen_alone", "cinv_cin_visit_bedroom"),
        event_dates=("cinv_cin_visit_date",),
        flags=("cinv_cin_visit_seen", "cinv_cin_visit_seen_alone", "cinv_cin_visit_bedroom"),
    ),
    SourceTable(
        "ssd_s47_enquiry", "s47e_s47_enquiry_id", "s47e_person_id",
        ("s47e_s47_enquiry_id", "s47e_referral_id", "s47e_person_id", "s47e_s47_start_date",
         "s47e_s47_end_date", "s47e_s47_nfa", "s47e_s47_outcome_json",
         "s47e_s47_completed_by_worker_id", "s47e_s47_completed_by_team"),
        parents=(Parent("s47e_referral_id", *_REFERRAL),),
        event_dates=("s47e_s47_start_date", "s47e_s47_end_date"),
        periods=(("s47e_s47_start_date", "s47e_s47_end_date"),),
        flags=("s47e_s47_nfa",),
        json=("s47e_s47_outcome_json",),
    ),
    SourceTable(
        "ssd_initial_cp_conference", "icpc_icpc_id", "icpc_person_id",
        ("icpc_icpc_id", "icpc_icpc_meeting_id", "icpc_s47_enquiry_id", "icpc_person_id",
         "icpc_cp_plan_id", "icpc_referral_id", "icpc_icpc_transfer_in", "icpc_icpc_target_date",
         "icpc_icpc_date", "icpc_icpc_outcome_cp_flag", "icpc_icpc_outcome_json",
         "icpc_icpc_team", "icpc_icpc_worker_id"),
        parents=(Parent("icpc_s47_enquiry_id", "ssd_s47_enquiry", "s47e_s47_enquiry_id"),),
        event_dates=("icpc_icpc_date",),
        other_dates=("icpc_icpc_target_date",),
        flags=("icpc_icpc_transfer_in", "icpc_icpc_outcome_cp_flag"),
        json=("icpc_icpc_outcome_json",),
    ),
    SourceTable(
        "ssd_cp_plans", "cppl_cp_plan_id", "cppl_person_id",
        ("cppl_cp_plan_id", "cppl_referral_id", "cppl_icpc_id", "cppl_person_id",
         "cppl_cp_plan_start_date", "cppl_cp_plan_end_date", "cppl_cp_plan_initial_category",
         "cppl_cp_plan_latest_category", "cppl_cp_plan_ola"),
        event_dates=("cppl_cp_plan_start_date", "cppl_cp_plan_end_date"),
        periods=(("cppl_cp_plan_start_date", "cppl_cp_plan_end_date"),),
        codes={"cppl_cp_plan_initial_category": CP_CATEGORY,
               "cppl_cp_plan_latest_category": CP_CATEGORY},
        flags=("cppl_cp_plan_ola",),
    ),
    SourceTable(
        "ssd_cp_reviews", "cppr_cp_review_id", "cppr_person_id",
        ("cppr_cp_review_id", "cppr_person_id", "cppr_cp_plan_id", "cppr_cp_review_due",
         "cppr_cp_review_date", "cppr_cp_review_outcome_continue_cp", "cppr_cp_review_quorate",
         "cppr_cp_review_participation"),
        parents=(Parent("cppr_cp_plan_id", "ssd_cp_plans", "cppl_cp_plan_id"),),
        event_dates=("cppr_cp_review_date",),
        other_dates=("cppr_cp_review_due",),
        codes={"cppr_cp_review_participation": PARTICIPATION},
        flags=("cppr_cp_review_outcome_continue_cp", "cppr_cp_review_quorate"),
    ),
    SourceTable(
        "ssd_cp_visits", "cppv_cp_visit_id", "cppv_person_id",
        ("cppv_cp_visit_id", "cppv_person_id", "cppv_cp_plan_id", "cppv_cp_visit_date",
         "cppv_cp_visit_seen", "cppv_cp_visit_seen_alone", "cppv_cp_visit_bedroom"),
        event_dates=("cppv_cp_visit_date",),
        flags=("cppv_cp_visit_seen", "cppv_cp_visit_seen_alone", "cppv_cp_visit_bedroom"),
    ),
    SourceTable(
        "ssd_cla_episodes", "clae_cla_episode_id", "clae_person_id",
        ("clae_cla_episode_id", "clae_person_id", "clae_cla_episode_start_date",
         "clae_cla_episode_start_reason", "clae_cla_primary_need_code",
         "clae_cla_episode_ceased_date", "clae_cla_episode_ceased_reason", "clae_cla_id",
         "clae_referral_id", "clae_cla_placement_id", "clae_entered_care_date"),
        event_dates=("clae_cla_episode_start_date", "clae_cla_episode_ceased_date"),
        periods=(("clae_cla_episode_start_date", "clae_cla_episode_ceased_date"),),
        other_dates=("clae_entered_care_date",),
        codes={"clae_cla_episode_start_reason": CLA_START_REASON,
               "clae_cla_primary_need_code": CLA_PRIMARY_NEED,
               "clae_cla_episode_ceased_reason": CLA_CEASED_REASON},
    ),
    SourceTable(
        "ssd_cla_placement", "clap_cla_placement_id", "clap_person_id",
        ("clap_cla_placement_id", "clap_cla_id", "clap_person_id", "clap_cla_placement_start_date",
         "clap_cla_placement_end_date", "clap_cla_placement_type", "clap_cla_placement_provider",
         "clap_cla_placement_postcode", "clap_cla_placement_urn", "clap_cla_placement_distance",
         "clap_cla_placement_change_reason"),
        event_dates=("clap_cla_placement_start_date", "clap_cla_placement_end_date"),
        periods=(("clap_cla_placement_start_date", "clap_cla_placement_end_date"),),
        codes={"clap_cla_placement_type": PLACEMENT_TYPE,
               "clap_cla_placement_change_reason": PLACEMENT_CHANGE_REASON},
    ),
    SourceTable(
        "ssd_legal_status", "lega_legal_status_id", "lega_person_id",
        ("lega_legal_status_id", "lega_person_id", "lega_legal_status",
         "lega_legal_status_start_date", "lega_legal_status_end_date"),
        event_dates=("lega_legal_status_start_date", "lega_legal_status_end_date"),
        periods=(("lega_legal_status_start_date", "lega_legal_status_end_date"),),
        codes={"lega_legal_status": LEGAL_STATUS},
    ),
    SourceTable(
        "ssd_cla_reviews", "clar_cla_review_id", None,
        ("clar_cla_review_id", "clar_cla_id", "clar_cla_review_due_date", "clar_cla_review_date",
         "clar_cla_review_cancelled", "clar_cla_review_participation"),
        owner=Parent("clar_cla_id", "ssd_cla_episodes", "clae_cla_id"),
        event_dates=("clar_cla_review_date",),
        other_dates=("clar_cla_review_due_date",),
        codes={"clar_cla_review_participation": PARTICIPATION},
        flags=("clar_cla_review_cancelled",),
    ),
    SourceTable(
        "ssd_cla_visits", "clav_cla_visit_id", "clav_person_id",
        ("clav_cla_visit_id", "clav_cla_id", "clav_person_id", "clav_cla_visit_date",
         "clav_cla_visit_seen", "clav_cla_visit_seen_alone"),
        event_dates=("clav_cla_visit_date",),
        flags=("clav_cla_visit_seen", "clav_cla_visit_seen_alone"),
    ),
    SourceTable(
        "ssd_cla_health", "clah_health_check_id", "clah_person_id",
        ("clah_health_check_id", "clah_person_id", "clah_health_check_type",
         "clah_health_check_date", "clah_health_check_status"),
        event_dates=("clah_health_check_date",),
        codes={"clah_health_check_status": HEALTH_CHECK_STATUS},
    ),
    SourceTable(
        "ssd_missing", "miss_table_id", "miss_person_id",
        ("miss_table_id", "miss_person_id", "miss_missing_episode_start_date",
         "miss_missing_episode_type", "miss_missing_episode_end_date", "miss_missing_rhi_offered",
         "miss_missing_rhi_accepted"),
        event_dates=("miss_missing_episode_start_date", "miss_missing_episode_end_date"),
        periods=(("miss_missing_episode_start_date", "miss_missing_episode_end_date"),),
        codes={"miss_missing_episode_type": MISSING_TYPE},
        flags=("miss_missing_rhi_offered", "miss_missing_rhi_accepted"),
    ),
    SourceTable(
        "ssd_care_leavers", "clea_table_id", "clea_person_id",
        ("clea_table_id", "clea_person_id", "clea_care_leaver_eligibility",
         "clea_care_leaver_in_touch", "clea_care_leaver_latest_contact",
         "clea_care_leaver_accommodation", "clea_care_leaver_accom_suitable",
         "clea_care_leaver_activity", "clea_pathway_plan_review_date",
         "clea_care_leaver_personal_advisor", "clea_care_leaver_allocated_team",
         "clea_care_leaver_worker_id"),
        event_dates=("clea_care_leaver_latest_contact",),
        other_dates=("clea_pathway_plan_review_date",),
        codes={"clea_care_leaver_in_touch": CARE_LEAVER_IN_TOUCH,
               "clea_care_leaver_accommodation": CARE_LEAVER_ACCOMMODATION,
               "clea_care_leaver_accom_suitable": ACCOMMODATION_SUITABLE},
    ),
    SourceTable(
        "ssd_involvements", "invo_involvements_id", "invo_person_id",
        ("invo_involvements_id", "invo_professional_id", "invo_professional_role_id",
         "invo_professional_team", "invo_involvement_start_date", "invo_involvement_end_date",
         "invo_worker_change_reason", "invo_person_id", "invo_referral_id"),
        event_dates=("invo_involvement_start_date", "invo_involvement_end_date"),
        periods=(("invo_involvement_start_date", "invo_involvement_end_date"),),
        codes={"invo_worker_change_reason": WORKER_CHANGE_REASON},
    ),
    SourceTable(
        "ssd_permanence", "perm_table_id", "perm_person_id",
        ("perm_table_id", "perm_person_id", "perm_cla_id", "perm_adm_decision_date",
         "perm_ffa_cp_decision_date",
         "perm_placement_order_date", "perm_placed_for_adoption_date", "perm_matched_date",
         "perm_placed_ffa_cp_date", "perm_decision_reversed_date", "perm_placed_foster_carer_date",
         "perm_permanence_order_date", "perm_permanence_order_type",
         "perm_decision_reversed_reason"),
        event_dates=("perm_adm_decision_date", "perm_ffa_cp_decision_date",
                     "perm_placement_order_date",
                     "perm_placed_for_adoption_date", "perm_matched_date",
                     "perm_placed_ffa_cp_date", "perm_decision_reversed_date",
                     "perm_placed_foster_carer_date", "perm_permanence_order_date"),
    ),
    SourceTable(
        CASE_NOTES_TABLE, "casn_case_note_id", "casn_person_id",
        ("casn_case_note_id", "casn_person_id", "casn_note_date", "casn_note_type",
         "casn_author", "casn_team", "casn_note_text", "casn_significant_flag"),
        event_dates=("casn_note_date",),
        flags=("casn_significant_flag",),
        text=("casn_note_text",),
        required=False,
    ),
)

TABLES_BY_NAME: dict[str, SourceTable] = {t.name: t for t in TABLES}
