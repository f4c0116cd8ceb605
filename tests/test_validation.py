"""Bad rows land in rejects with the right rule and reason; nothing else is lost."""

from __future__ import annotations

import subprocess
import sys
from contextlib import contextmanager, nullcontext
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from expectations import load_suite
from expectations.generate import raw_suite, render
from flows import validation, verdicts
from flows.steps import stage_unit, validate_table
from flows.validation import ExpectationError, SuiteRunner, verdicts_last
from tests.conftest import raw_tables
from transforms.fingerprint import row_children
from transforms.parts import SourceRead
from transforms.prepare import known_ids, mark_source
from transforms.shards import by_unit
from transforms.ssd import TABLES, TABLES_BY_NAME

AS_OF = pd.Timestamp("2026-03-31 23:59:59")
PEOPLE = [{"pers_person_id": f"P{i}", "pers_dob": "2010-05-01", "pers_sex": "F"}
          for i in range(4)]


@pytest.fixture(scope="module")
def runner() -> SuiteRunner:
    return SuiteRunner()


def _plan(i: int) -> dict:
    return {"cppl_cp_plan_id": f"PL{i}", "cppl_person_id": f"P{i % 4}",
            "cppl_cp_plan_start_date": f"2016-02-{1 + i % 27:02d}",
            "cppl_cp_plan_end_date": f"2017-01-{1 + i % 27:02d}",
            "cppl_cp_plan_initial_category": "NEG"}


def _contact(i: int) -> dict:
    return {"cont_contact_id": f"C{i}", "cont_person_id": f"P{i % 4}",
            "cont_contact_date": f"2015-03-{1 + i % 27:02d}", "cont_contact_source_code": "6",
            "cont_contact_outcome_json": '{"NFA_FLAG": "Y"}'}


def _review(i: int, plans: int = 3) -> dict:
    return {"cppr_cp_review_id": f"RV{i}", "cppr_person_id": f"P{i % 4}",
            "cppr_cp_plan_id": f"PL{i % plans}", "cppr_cp_review_date": "2016-06-01"}


# How each kind of bad record is made, and the rule that must reject it.
CORRUPTIONS = {
    "missing_person_id": ("ssd_cp_plans", {"cppl_person_id": None}, "person.present"),
    "unknown_person_id": ("ssd_contacts", {"cont_person_id": "NOBODY"}, "person.exists"),
    "orphan_foreign_key": ("ssd_cp_reviews", {"cppr_cp_plan_id": "PL-GONE"}, "parent.exists"),
    "end_before_start": ("ssd_cp_plans", {"cppl_cp_plan_end_date": "2015-01-01"},
                         "dates.end_after_start"),
    "future_date": ("ssd_contacts", {"cont_contact_date": "2115-03-01"}, "dates.not_future"),
    "date_before_birth": ("ssd_contacts", {"cont_contact_date": "1901-01-01"},
                          "dates.not_before_birth"),
    "unknown_code": ("ssd_cp_plans", {"cppl_cp_plan_initial_category": "XX9"}, "codes.known"),
    "malformed_json": ("ssd_contacts", {"cont_contact_outcome_json": '{"NFA_FLAG": "Y"'},
                       "json.valid"),
    "unreadable_date": ("ssd_contacts", {"cont_contact_date": "31/02/2015"},
                        "conform.readable_date"),
    # Centuries out: a difference in nanoseconds would overflow.
    "date_centuries_before_birth": ("ssd_contacts", {"cont_contact_date": "1700-01-01"},
                                    "dates.not_before_birth"),
    # Python's JSON parser gives up on this with RecursionError, not ValueError.
    "deeply_nested_json": ("ssd_contacts", {"cont_contact_outcome_json": "[" * 5000},
                           "json.valid"),
    "no_event_date": ("ssd_cp_plans", {"cppl_cp_plan_start_date": None}, "event.dated"),
}


def _run(tables: dict[str, list[dict]], runner: SuiteRunner, shards: int = 2,
         with_tables: bool = False, earlier: verdicts.Earlier | None = None,
         as_of: pd.Timestamp = AS_OF):
    """The flow's steps without Prefect: prepare, validate tables, stage shards."""
    read = SourceRead.in_memory(raw_tables(tables))
    marked = mark_source(read, row_children(read, TABLES_BY_NAME), known_ids(read), shards,
                         [tuple(range(shards))])
    prepared = marked.whole_tables()
    validated = [validate_table(name, frame, prepared.births, prepared.known, as_of, runner,
                                shards, earlier) for name, frame in prepared.frames.items()]
    checked = [outcome for _, outcome in validated]
    units = [(number,) for number in range(shards)]
    parts = by_unit({outcome.name: shard_parts for shard_parts, outcome in validated}, units)
    staged = [stage_unit(unit, part, as_of, runner)
              for unit, part in zip(units, parts, strict=True)]
    outcomes = [outcome for _, outcome in staged]
    rejects = pd.concat([marked.rejects, *(t.rejects for t in checked),
                         *(o.rejects for o in outcomes)], ignore_index=True)
    events = pd.concat([events for events, _ in staged], ignore_index=True)
    findings = pd.concat([t.findings for t in checked], ignore_index=True)
    if with_tables:
        return rejects, events, outcomes, findings, checked
    return rejects, events, outcomes, findings


@pytest.mark.parametrize("kind", sorted(CORRUPTIONS))
def test_each_kind_of_bad_record_is_rejected_with_its_rule(kind, runner):
    table, change, rule = CORRUPTIONS[kind]
    builders = {"ssd_cp_plans": _plan, "ssd_contacts": _contact, "ssd_cp_reviews": _review}
    tables = {"ssd_person": PEOPLE, **{t: [b(i) for i in range(3)] for t, b in builders.items()}}
    tables[table][1] = {**tables[table][1], **change}
    rejects, events, _, _ = _run(tables, runner)
    assert len(rejects) == 1, rejects[["table", "rule", "reason"]].to_string()
    reject = rejects.iloc[0]
    assert (reject["table"], reject["source_row"], reject["rule"]) == (table, 1, rule)
    assert reject["reason"]
    # The other rows of that table all reached the events.
    staged = set(events.loc[events["source_table"] == table, "source_row"])
    assert staged == {0, 2}


def test_exact_copies_keep_one_and_conflicting_copies_reject_all(runner):
    plans = [_plan(0), _plan(1), _plan(2)]
    exact = dict(plans[0])
    conflicting = {**plans[1], "cppl_cp_plan_start_date": "2016-03-30"}
    rejects, events, _, _ = _run({"ssd_person": PEOPLE,
                               "ssd_cp_plans": [*plans, exact, conflicting]}, runner)
    by_rule = rejects.groupby("rule")["source_row"].apply(sorted).to_dict()
    # Row 3 repeats row 0 exactly: one of the two is kept. Rows 1 and 4 share a key but
    # disagree on the start date, so neither can be trusted.
    assert by_rule == {"conform.exact_copy": [3], "key.unique": [1, 4]}
    assert set(events.loc[events["source_table"] == "ssd_cp_plans", "source_row"]) == {0, 2}


def test_rows_rejected_earlier_are_not_counted_again_by_the_suite(runner):
    # An exact copy of a row with an unknown child is rejected as a copy; the suite's
    # count for person.exists must count the row once, not twice.
    orphan = {**_contact(1), "cont_person_id": "NOBODY"}
    _, _, _, _, tables = _run({"ssd_person": PEOPLE,
                               "ssd_contacts": [_contact(0), orphan, dict(orphan)]},
                              runner, with_tables=True)
    counts = {r["rule"]: r["unexpected"] for t in tables if t.name == "ssd_contacts"
              for r in t.validation}
    assert counts["person.exists"] == 1


def test_markup_in_case_notes_is_kept_and_reported_as_a_finding(runner):
    notes = [{"casn_case_note_id": "N1", "casn_person_id": "P0", "casn_note_date": "2016-01-01",
              "casn_note_text": "<img src=x onerror=alert(1)>", "casn_significant_flag": "N"},
             {"casn_case_note_id": "N2", "casn_person_id": "P0", "casn_note_date": "2016-01-02",
              "casn_note_text": "Visited at home; all well.", "casn_significant_flag": "N"}]
    rejects, events, _, findings = _run({"ssd_person": PEOPLE, "ext_case_notes": notes}, runner)
    assert rejects.empty
    assert findings["record_id"].tolist() == ["N1"]
    assert "<img src=x onerror=alert(1)>" in events["text"].tolist()


def test_an_expectation_that_errors_is_a_pipeline_error(runner):
    # A date compared with a number cannot be evaluated: that must stop the run, not
    # pass or reject rows.
    frame = pd.DataFrame({"_row": [0, 1], "event_date": pd.to_datetime(["2016-01-01", None]),
                          "age_days": ["a", "b"], "child_id": ["P0", "P0"],
                          "event_id": ["x", "y"], "event_type": ["contact", "contact"],
                          "date_precision": ["day", "day"]})
    with pytest.raises(ExpectationError, match="could not be evaluated"):
        runner.run("events", frame, {"as_of": AS_OF.isoformat(), "event_types": ["contact"]})


def _every_corruption() -> dict[str, list[dict]]:
    tables: dict[str, list[dict]] = {"ssd_person": PEOPLE,
                                     "ssd_cp_plans": [_plan(i) for i in range(6)],
                                     "ssd_contacts": [_contact(i) for i in range(6)],
                                     "ssd_cp_reviews": [_review(i) for i in range(4)]}
    for number, (table, change, _) in enumerate(CORRUPTIONS.values()):
        tables[table][number % 4] = {**tables[table][number % 4], **change}
    return tables


def _assert_same_findings(one, other) -> None:
    assert not one[0].empty
    pd.testing.assert_frame_equal(one[0], other[0])
    pd.testing.assert_frame_equal(one[1], other[1])
    assert [o.validation for o in one[2]] == [o.validation for o in other[2]]


def test_narrow_batches_find_what_one_batch_finds(runner, monkeypatch):
    # Large tables are validated one set of columns at a time (see NARROW_BATCH_ROWS),
    # small ones first for pass or fail and then for the rows of those that failed; each
    # must change the speed only, never which rows fail or why.
    tables = _every_corruption()
    one_batch = _run(tables, runner)
    monkeypatch.setattr(validation, "NARROW_BATCH_ROWS", 0)
    _assert_same_findings(one_batch, _run(tables, runner))


def test_configurations_built_once_per_run_find_what_gx_alone_finds(runner, monkeypatch):
    # Within a run, GX's expectations build their configuration once, not on every ask
    # (`validation._remember_configurations`): that must change the speed only. And GX
    # must still ask through the property, or the memo silently stops paying.
    tables = _every_corruption()
    remembered = validation._configurations_remembered
    sizes = []

    @contextmanager
    def watched():
        with remembered():
            yield
            sizes.append(len(validation._CONFIGURATIONS.memo))

    monkeypatch.setattr(validation, "_configurations_remembered", watched)
    once = _run(tables, runner)
    assert sizes and all(sizes)
    monkeypatch.setattr(validation, "_configurations_remembered", nullcontext)
    _assert_same_findings(once, _run(tables, runner))


def _with_notes(tables: dict[str, list[dict]]) -> dict[str, list[dict]]:
    """`tables` with case notes, one of which GX finds holding markup (a warning)."""
    notes = [{"casn_case_note_id": f"N{i}", "casn_person_id": f"P{i % 4}",
              "casn_note_date": f"2016-01-{1 + i:02d}", "casn_significant_flag": "N",
              "casn_note_text": "<b>seen</b>" if i == 2 else f"Visited at home ({i})."}
             for i in range(5)]
    return {**tables, "ext_case_notes": notes}


def test_rows_judged_before_are_not_put_to_gx_again_and_gx_alone_finds_the_same(
        runner, monkeypatch, tmp_path):
    # A source suite judges each row by its own checked values, so a rerun puts to GX
    # only the rows it has not seen (`flows/verdicts.py`) and recalls the failures of
    # the others: rejects, reasons, findings and every expectation's count must be what
    # GX finds checking every row.
    tables = _with_notes(_every_corruption())
    checked = []  # rows put to GX, one number per suite run
    batches = validation._batches
    monkeypatch.setattr(validation, "_batches",
                        lambda expectations, rows: checked.append(rows) or
                        batches(expectations, rows))
    alone = _run(tables, runner, with_tables=True)
    checked_alone, checked[:] = sum(checked), []
    first = _run(tables, runner, with_tables=True, earlier=verdicts.Earlier())
    _assert_same_findings(alone, first)
    verdicts.write_verdicts(tmp_path, None, {t.name: t.found for t in first[4]}, AS_OF, "r1")
    checked[:] = []

    again = _run(tables, runner, with_tables=True, earlier=verdicts.earlier(tmp_path, AS_OF))
    _assert_same_findings(alone, again)
    assert [t.validation for t in again[4]] == [t.validation for t in alone[4]]
    pd.testing.assert_frame_equal(again[3], alone[3])  # the markup finding, again
    # Put to GX again: only the rows rejected before it (their verdict is not known).
    rejects = alone[0]
    unsure = rejects["rule"].str.startswith("conform.").sum()
    rows = sum(len(rows) for rows in tables.values())
    judged_before = sum(t.rows["judged_before"] for t in again[4])
    assert judged_before == rows - unsure
    assert sum(checked) == checked_alone - judged_before


def test_what_depends_on_the_as_of_date_is_reused_only_where_it_still_holds(
        runner, tmp_path):
    # A contact dated after one as-of date but before another passes at the later date
    # only. What passed then may be reused at that date or after, never before it; a
    # failure for a date in the future is never reused (the date comes).
    contact = {**_contact(0), "cont_contact_date": "2026-04-15"}
    tables = {"ssd_person": PEOPLE, "ssd_contacts": [contact, _contact(1)]}
    later = AS_OF + pd.Timedelta(days=30)
    first = _run(tables, runner, with_tables=True, earlier=verdicts.Earlier(), as_of=later)
    assert first[0].empty
    verdicts.write_verdicts(tmp_path / "later", None, {t.name: t.found for t in first[4]},
                            later, "r1")
    assert verdicts.earlier(tmp_path / "later", later + pd.Timedelta(days=1)).files
    assert not verdicts.earlier(tmp_path / "later", AS_OF).files
    sooner = _run(tables, runner, with_tables=True,
                  earlier=verdicts.earlier(tmp_path / "later", AS_OF))
    assert sooner[0]["rule"].tolist() == ["dates.not_future"]

    verdicts.write_verdicts(tmp_path / "sooner", None, {t.name: t.found for t in sooner[4]},
                            AS_OF, "r2")
    again = _run(tables, runner, with_tables=True,
                 earlier=verdicts.earlier(tmp_path / "sooner", later), as_of=later)
    assert again[0].empty
    contacts = next(t for t in again[4] if t.name == "ssd_contacts")
    assert contacts.rows == {"rows": 2, "judged_before": 1}


def test_every_source_suite_may_reuse_verdicts_and_the_events_suite_may_not():
    # The events suite asks whether ids are unique: a row's verdict there depends on
    # other rows. A suite that gains such an expectation, or a parameter other than the
    # as-of date as the latest allowed, must stop reusing passes.
    assert all(verdicts_last(load_suite(table.name)["expectations"]) for table in TABLES)
    assert not verdicts_last(load_suite("events")["expectations"])
    earliest = {"type": "expect_column_values_to_be_between",
                "kwargs": {"column": "d", "min_value": {"$PARAMETER": "as_of"}}}
    assert not verdicts_last([earliest])


def test_gx_still_lets_us_skip_its_batch_fingerprint(runner):
    # SuiteRunner turns off GX's fingerprint of every batch by lowering this module
    # setting; if a GX upgrade drops it, validation silently gets ~25% slower.
    from great_expectations.execution_engine import pandas_execution_engine

    runner.warm_up()
    assert pandas_execution_engine.HASH_THRESHOLD == 0


RACE = """
import threading
from concurrent.futures import ThreadPoolExecutor
from great_expectations.core import suite_parameters
from flows.validation import SuiteRunner

SuiteRunner().warm_up()
start = threading.Barrier(8)

def parse(number):
    if number < 8:
        start.wait()  # eight threads make GX's first parses at the same moment
    return suite_parameters.build_suite_parameters(
        {"value": {"$PARAMETER": "p"}}, {"p": number})[0]["value"]

with ThreadPoolExecutor(max_workers=8) as pool:
    assert list(pool.map(parse, range(400))) == list(range(400))
"""


def test_suite_parameters_parse_safely_from_several_threads():
    # GX parses $PARAMETER values with one shared pyparsing parser, and pyparsing works
    # out its callbacks' arity on their first calls: threads that make those first calls
    # together fail with "push_first() missing 1 required positional argument" (this
    # script failed 5 runs in 5 without the runner's lock). It needs a fresh process.
    result = subprocess.run([sys.executable, "-c", RACE], capture_output=True, text=True,
                            cwd=Path(__file__).parents[1], timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]


DEFERRED = """
import sys

import pandas as pd
from flows.validation import SuiteRunner

runner = SuiteRunner()
runner.warm_up()
# A suite run, as a run makes them, after GX's import.
frame = pd.DataFrame({"_row": [0], "event_date": pd.to_datetime(["2016-01-01"]),
                      "age_days": [10], "child_id": ["P0"], "event_id": ["x"],
                      "event_type": ["contact"], "date_precision": ["day"]})
assert runner.run("events", frame, {"as_of": "2026-03-31T23:59:59", "event_types": ["contact"]}
                  ).rows.empty
# A package imports its submodules when it runs: none has if nothing used it.
for name in ("scipy.stats", "altair"):
    used = sorted(module for module in sys.modules if module.startswith(name + "."))
    assert not used, f"{name} was loaded by GX's import or a suite run: {used[:5]}"
# Threads that use it at once (or scan sys.modules, as inspect does) all get it whole.
import threading
from concurrent.futures import ThreadPoolExecutor
deferred = sys.modules["scipy.stats"]
start = threading.Barrier(4)

def use(name):
    start.wait()
    return callable(getattr(deferred, name))

with ThreadPoolExecutor(max_workers=4) as pool:
    assert all(pool.map(use, ["entropy", "norm", "ks_2samp", "kstest"]))
import scipy.stats
assert round(float(scipy.stats.entropy([0.5, 0.5])), 4) == 0.6931
import altair
assert altair.Chart(pd.DataFrame({"x": [1]})).mark_point().to_dict()["mark"]["type"] == "point"
"""


def test_modules_gx_does_not_need_load_only_when_used():
    # GX imports scipy.stats and altair for expectations our suites do not have; the
    # runner defers them (~40% of GX's import). If GX starts to use one on import or in
    # our suites, the saving is gone and this fails; so does a stand-in that gives
    # threads a half-loaded module (the standard library's LazyLoader did, on Python
    # 3.11). It needs a fresh process.
    result = subprocess.run([sys.executable, "-c", DEFERRED], capture_output=True,
                            text=True, cwd=Path(__file__).parents[1], timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]


def test_committed_suites_match_the_contract():
    # The raw suites are generated from transforms/ssd.py; a stale file means the checks
    # and the contract have drifted apart (run `python -m expectations.generate`).
    for table in TABLES:
        from expectations import suite_path

        assert suite_path(table.name).read_text(encoding="utf-8") == render(raw_suite(table))
        assert load_suite(table.name)["name"] == table.name


BUILDERS = {"ssd_cp_plans": _plan, "ssd_contacts": _contact, "ssd_cp_reviews": _review}


@st.composite
def bad_mixes(draw):
    """Base rows of three tables with a random subset corrupted in random ways."""
    sizes = {t: draw(st.integers(1, 6)) for t in BUILDERS}
    tables = {t: [b(i) for i in range(sizes[t])] for t, b in BUILDERS.items()}
    # Reviews belong to plans that exist (unless corrupted below).
    tables["ssd_cp_reviews"] = [_review(i, sizes["ssd_cp_plans"])
                                for i in range(sizes["ssd_cp_reviews"])]
    expected: dict[tuple[str, int], str] = {}
    kinds = [k for k in CORRUPTIONS if k != "no_event_date"]
    for table, rows in tables.items():
        for i in range(len(rows)):
            kind = draw(st.sampled_from([None, None, *kinds]))
            if kind is None or CORRUPTIONS[kind][0] != table:
                continue
            rows[i] = {**rows[i], **CORRUPTIONS[kind][1]}
            expected[(table, i)] = CORRUPTIONS[kind][2]
    copies = draw(st.lists(st.sampled_from(sorted(BUILDERS)), max_size=3))
    for table in copies:
        rows = tables[table]
        source = draw(st.integers(0, len(rows) - 1))
        if (table, source) in expected:
            continue
        rows.append(dict(rows[source]))
        expected[(table, len(rows) - 1)] = "conform.exact_copy"
    return tables, expected


@settings(max_examples=6, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(mix=bad_mixes(), shards=st.integers(1, 2))
def test_random_bad_rows_are_rejected_and_nothing_else_is_lost(mix, shards, runner):
    tables, expected = mix
    rejects, events, outcomes, _ = _run({"ssd_person": PEOPLE, **tables}, runner, shards)
    rejected = {(r.table, r.source_row): r.rule for r in rejects.itertuples()}
    assert len(rejected) == len(rejects), "a row was rejected twice"
    assert rejected == expected
    # Every other row reached the events exactly once per role, and no event is doubled.
    assert events["event_id"].is_unique
    for table, rows in tables.items():
        staged = set(events.loc[events["source_table"] == table, "source_row"])
        assert staged == {i for i in range(len(rows)) if (table, i) not in expected}
    staged_counts = {}
    for outcome in outcomes:
        for name, count in outcome.rows_staged.items():
            staged_counts[name] = staged_counts.get(name, 0) + count
    for table, rows in tables.items():
        assert staged_counts[table] + sum(1 for t, _ in expected if t == table) == len(rows)


def test_a_review_of_an_unknown_childs_care_is_rejected_not_staged(runner):
    # The review finds its child through the period of care; if that names nobody in
    # ssd_person, the review must not reach any chronology.
    episodes = [{"clae_cla_episode_id": "E1", "clae_person_id": "NOBODY", "clae_cla_id": "CLA1",
                 "clae_cla_episode_start_date": "2018-01-01"}]
    reviews = [{"clar_cla_review_id": "R1", "clar_cla_id": "CLA1",
                "clar_cla_review_date": "2018-03-01"}]
    rejects, events, _, _ = _run({"ssd_person": PEOPLE, "ssd_cla_episodes": episodes,
                                  "ssd_cla_reviews": reviews}, runner)
    by_table = dict(zip(rejects["table"], rejects["rule"], strict=True))
    assert by_table == {"ssd_cla_episodes": "person.exists", "ssd_cla_reviews": "person.exists"}
    assert "NOBODY" not in set(events["child_id"])
