"""The synthetic SSD generator: determinism, believable proportions, consistent dates,
the bad records it promises, and the real-extract spellings the pipeline must accept."""

from __future__ import annotations

import json
import sqlite3
from datetime import date
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fixtures._inject import KINDS
from fixtures.examples import load_examples
from fixtures.generator import GenerationReport, generate_database
from transforms.ssd import CASE_NOTES_TABLE, CP_CATEGORY, FLAG_VALUES, TABLES, TABLES_BY_NAME

AS_OF = date(2026, 3, 31)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, GenerationReport]:
    path = tmp_path_factory.mktemp("demo") / "ssd.sqlite"
    return path, generate_database(path, children=3000, seed=7)


def _read(path: Path, table: str) -> pd.DataFrame:
    with sqlite3.connect(path) as conn:
        return pd.read_sql(f"SELECT * FROM {table}", conn, dtype=str)


def _day(values: pd.Series) -> pd.Series:
    return pd.to_datetime(values.str.slice(0, 10), format="%Y-%m-%d", errors="coerce")


def _dump(path: Path) -> dict[str, list[tuple]]:
    with sqlite3.connect(path) as conn:
        names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return {n: conn.execute(f"SELECT * FROM {n} ORDER BY rowid").fetchall() for n in names}


# ---------------------------------------------------------------------------- determinism

def test_same_seed_same_data_other_seed_other_data(tmp_path: Path) -> None:
    first, second, other = (tmp_path / f"{n}.sqlite" for n in ("a", "b", "c"))
    generate_database(first, children=300, seed=1)
    generate_database(second, children=300, seed=1)
    generate_database(other, children=300, seed=2)
    assert _dump(first) == _dump(second)
    assert _dump(first)["ssd_contacts"] != _dump(other)["ssd_contacts"]


def test_overwrites_an_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "ssd.sqlite"
    path.write_text("not a database")
    generate_database(path, children=50)
    assert len(_read(path, "ssd_person")) >= 50


def test_report_counts_match_the_database(demo: tuple[Path, GenerationReport]) -> None:
    path, report = demo
    assert set(report.rows) == {t.name for t in TABLES}
    for table, count in report.rows.items():
        assert len(_read(path, table)) == count, table
    assert list(report.injected.columns) == ["table", "record_id", "kind", "column"]
    assert report.seconds > 0


def test_without_case_notes_the_table_is_absent(tmp_path: Path) -> None:
    path = tmp_path / "plain.sqlite"
    report = generate_database(path, children=100, case_notes=False)
    with sqlite3.connect(path) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
    assert CASE_NOTES_TABLE not in tables and CASE_NOTES_TABLE not in report.rows
    assert "ssd_cp_visits" in tables


# ---------------------------------------------------------------------------- small populations

# A handful of children leaves many selections empty (nobody referred, no plans, no care):
# every step must cope with zero rows, not just the large runs the proportions are tuned on.
SMALL = (1, 2, 3, 5, 8, 13, 30)


def _assert_opens_with_children(path: Path, report: GenerationReport, people: int) -> None:
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        for table, count in report.rows.items():
            assert conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0] == count, table
        assert conn.execute("SELECT COUNT(*) FROM ssd_person").fetchone()[0] == people


@pytest.mark.parametrize("examples", [True, False])
@pytest.mark.parametrize("seed", range(1, 7))
@pytest.mark.parametrize("children", SMALL)
def test_small_populations(tmp_path: Path, children: int, seed: int, examples: bool) -> None:
    path = tmp_path / "small.sqlite"
    report = generate_database(path, children=children, seed=seed, examples=examples)
    # ssd_person never gets injected rows: one per generated child, one per example.
    people = children + (len(load_examples()) if examples else 0)
    _assert_opens_with_children(path, report, people)


@settings(deadline=None, max_examples=25)
@given(children=st.integers(1, 40), seed=st.integers(0, 10_000),
       bad_rate=st.floats(0, 0.5), case_notes=st.booleans(), examples=st.booleans())
def test_any_small_population_generates(
    tmp_path_factory: pytest.TempPathFactory, children: int, seed: int, bad_rate: float,
    case_notes: bool, examples: bool,
) -> None:
    # tmp_path_factory, not tmp_path: one fresh folder per example, not one per test.
    path = tmp_path_factory.mktemp("any") / "ssd.sqlite"
    report = generate_database(path, children=children, seed=seed, bad_rate=bad_rate,
                               case_notes=case_notes, examples=examples)
    people = children + (len(load_examples()) if examples else 0)
    _assert_opens_with_children(path, report, people)


# ---------------------------------------------------------------------------- proportions

def test_proportions_per_100_referrals(demo: tuple[Path, GenerationReport]) -> None:
    # PRACTICE.md ("Realistic proportions", DfE statistics): per 100 referrals ~32 S47s,
    # ~12 initial conferences, ~11 CP plans, ~5 children starting to be looked after. The
    # bands are wide enough for a 3,000-child sample (~5,000 referrals) to sit inside by
    # chance, narrow enough that a broken branch (e.g. every S47 going to conference) fails.
    path, _ = demo
    referrals = len(_read(path, "ssd_cin_episodes"))
    per_100 = {
        "s47": len(_read(path, "ssd_s47_enquiry")),
        "icpc": len(_read(path, "ssd_initial_cp_conference")),
        "cp": len(_read(path, "ssd_cp_plans")),
        "care": _read(path, "ssd_cla_episodes").clae_cla_id.nunique(),
    }
    per_100 = {k: 100 * v / referrals for k, v in per_100.items()}
    assert 20 <= per_100["s47"] <= 45
    assert 6 <= per_100["icpc"] <= 20
    assert 5 <= per_100["cp"] <= 18
    assert 2 <= per_100["care"] <= 10


def test_rereferrals_within_12_months(demo: tuple[Path, GenerationReport]) -> None:
    # About 1 in 5 referrals follows another for the same child within 12 months.
    path, _ = demo
    ref = _read(path, "ssd_cin_episodes").assign(
        day=lambda f: _day(f.cine_referral_date)).dropna(subset=["day"])
    ref = ref.sort_values(["cine_person_id", "day"])
    gap = ref.day - ref.groupby("cine_person_id").day.shift()
    assert 0.10 <= (gap.dt.days <= 365).mean() <= 0.30


def test_most_contacts_end_in_no_further_action_or_advice(demo) -> None:
    # Contacts outnumber referrals several times over and most end in NFA or advice.
    path, _ = demo
    contacts = _read(path, "ssd_contacts")
    assert len(contacts) > 3 * len(_read(path, "ssd_cin_episodes"))
    outcomes = contacts.cont_contact_outcome_json.map(_loads).dropna()
    nfa = outcomes.map(lambda o: o.get("NFA_FLAG") == "Y" or o.get("ADVICE_FLAG") == "Y")
    assert nfa.mean() > 0.5


def test_case_notes_are_the_largest_table(demo: tuple[Path, GenerationReport]) -> None:
    # A raw event log is dominated by case notes; a few are marked significant.
    path, report = demo
    assert max(report.rows, key=report.rows.get) == CASE_NOTES_TABLE
    flags = _read(path, CASE_NOTES_TABLE).casn_significant_flag.str.upper().map(FLAG_VALUES)
    assert 0.01 <= (flags == "Y").mean() <= 0.06


def test_looked_after_children(demo: tuple[Path, GenerationReport]) -> None:
    # About 70% of placements are foster placements; about 1 in 10 looked-after children
    # goes missing (more here because the extract covers years, not one).
    path, _ = demo
    types = _read(path, "ssd_cla_placement").clap_cla_placement_type
    assert 0.6 <= types.str.startswith("U").mean() <= 0.8
    in_care = _read(path, "ssd_cla_episodes").clae_person_id.nunique()
    missing = _read(path, "ssd_missing").miss_person_id.nunique()
    assert 0.05 <= missing / in_care <= 0.3


# ---------------------------------------------------------------------------- dates

def _births(path: Path) -> pd.Series:
    person = _read(path, "ssd_person")
    birth = pd.concat([_day(person.pers_dob), _day(person.pers_expected_dob)], axis=1).min(axis=1)
    return pd.Series(birth.values, index=person.pers_person_id)


def _child_of(path: Path, table: str, frame: pd.DataFrame) -> pd.Series:
    spec = TABLES_BY_NAME[table]
    if spec.person:
        return frame[spec.person]
    owner = spec.owner
    parent_person = TABLES_BY_NAME[owner.table].person
    lookup = _read(path, owner.table).drop_duplicates(owner.key).set_index(owner.key)
    return frame[owner.column].map(lookup[parent_person])


def test_dates_are_consistent_outside_injected_rows(demo) -> None:
    # No period ends before it starts, nothing happens after "as of", and nothing happens
    # more than a pregnancy (280 days) before the child's expected or actual birth.
    path, report = demo
    births = _births(path)
    as_of = pd.Timestamp(AS_OF)
    for spec in TABLES:
        frame = _read(path, spec.name)
        bad = report.injected.loc[report.injected.table == spec.name, "record_id"]
        frame = frame[~frame[spec.key].isin(set(bad))]
        birth = _child_of(path, spec.name, frame).map(births)
        for start, end in spec.periods:
            assert not (_day(frame[end]) < _day(frame[start])).any(), (spec.name, end)
        for column in spec.event_dates:
            when = _day(frame[column])
            assert not (when > as_of).any(), (spec.name, column)
            early = when < birth - pd.Timedelta(days=280)
            assert not early.any(), (spec.name, column, frame.loc[early, spec.key].head())


def test_case_notes_are_always_dated(demo: tuple[Path, GenerationReport]) -> None:
    # A note is written on a day; a note with no date cannot be placed in a chronology
    # (it would be rejected), so the generator must never write one.
    path, _ = demo
    notes = _read(path, "ext_case_notes")
    assert notes.casn_note_date.notna().all()


def test_open_plans_have_no_end_date(demo: tuple[Path, GenerationReport]) -> None:
    path, _ = demo
    plans = _read(path, "ssd_cp_plans")
    assert plans.cppl_cp_plan_end_date.isna().any()
    assert not (plans.cppl_cp_plan_end_date == "").any()


# ---------------------------------------------------------------------------- bad records

def test_every_bad_kind_is_injected_and_logged(tmp_path: Path) -> None:
    path = tmp_path / "bad.sqlite"
    report = generate_database(path, children=400, bad_rate=0.05)
    injected = report.injected
    assert set(injected.kind) == set(KINDS)
    # One fault per record: a (table, record) pair is logged once.
    assert not injected.duplicated(["table", "record_id"]).any()
    assert "ssd_person" not in set(injected.table)
    anchors = injected[injected.table.isin(["ssd_cin_assessments", "ssd_cla_episodes"])]
    assert not anchors.kind.isin(
        ["missing_person_id", "unknown_person_id", "duplicate_primary_key"]).any()
    for kind, rows in injected.groupby("kind"):
        for (table, column), some in rows.groupby(["table", "column"]):
            spec = TABLES_BY_NAME[table]
            assert column in spec.columns
            frame = _read(path, table)
            assert set(some.record_id) <= set(frame[spec.key]), (kind, table)
            _assert_looks_bad(kind, spec, frame, some, column)


def _assert_looks_bad(kind, spec, frame, some, column) -> None:
    picked = frame[frame[spec.key].isin(set(some.record_id))]
    if kind == "duplicate_primary_key":
        assert picked[spec.key].duplicated().sum() == len(some)
    elif kind == "missing_person_id":
        assert (picked[column].isna() | (picked[column] == "")).all()
    elif kind == "end_before_start":
        start = next(s for s, e in spec.periods if e == column)
        assert (_day(picked[column]) < _day(picked[start])).all()
    elif kind == "future_date":
        assert (_day(picked[column]) > pd.Timestamp("2100-01-01")).all()
    elif kind == "unknown_code":
        code_set = spec.codes[column]
        assert not picked[column].isin(code_set.codes + tuple(code_set.aliases)).any()
    elif kind == "malformed_json":
        assert picked[column].map(_loads).isna().all()
    elif kind == "markup_in_text":
        assert picked[column].str.contains("<script>|<img", regex=True).all()


def _loads(text: str | None) -> object:
    try:
        return json.loads(text)
    except (TypeError, ValueError):
        return None


# ---------------------------------------------------------------------------- real spellings

def test_real_extract_spellings_are_present(demo: tuple[Path, GenerationReport]) -> None:
    # GOOD rows in the shapes real extracts use: SQL Server datetimes, 1/0/true/false
    # flags, CP categories as codes and as descriptions, JSON dicts with every key.
    path, _ = demo
    visits = _read(path, "ssd_cp_visits")
    timed = visits.cppv_cp_visit_date.str.endswith(" 00:00:00").mean()
    assert 0.1 <= timed <= 0.3
    spelt = visits.cppv_cp_visit_seen.isin(["1", "0", "true", "false"]).mean()
    assert 0.05 <= spelt <= 0.15
    category = _read(path, "ssd_cp_plans").cppl_cp_plan_initial_category
    assert category.isin(CP_CATEGORY.codes).mean() > 0.3
    assert category.isin(list(CP_CATEGORY.aliases)).mean() > 0.2
    s47 = _read(path, "ssd_s47_enquiry").s47e_s47_outcome_json.map(_loads).dropna()
    assert s47.map(lambda o: isinstance(o, dict) and "TOTAL_NO_OF_OUTCOMES" in o).all()
    factors = _read(path, "ssd_assessment_factors").cinf_assessment_factors_json
    parsed = factors.map(_loads).dropna()
    assert parsed.map(lambda f: isinstance(f, list)).all()
    assert parsed.map(lambda f: "11A" in f).any() and parsed.map(lambda f: "24A" in f).any()
