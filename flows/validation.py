"""A thin runner for the Great Expectations suites in `expectations/`.

Row-level failures come back as a frame of failed rows with the rule and a reason;
an expectation that *errors* (bad configuration, a type GX cannot compare) is a
pipeline fault and raises, because its silence would pass bad data as good.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import logging
import re
import sys
import threading
import types
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import numpy as np
import pandas as pd

from expectations import load_suite
from expectations.generate import AS_OF
from flows.verdicts import Earlier, Verdicts
from transforms.fingerprint import frame_hashes

# GX reports progress with tqdm bars and chatty loggers; neither belongs in a nightly log.
logging.getLogger("great_expectations").setLevel(logging.WARNING)

FAILURE_COLUMNS = ("_row", "expectation", "rule", "severity", "reason")
_PLACEHOLDER = re.compile(r"\{value\}")


class ExpectationError(RuntimeError):
    """An expectation could not be evaluated: a fault in the pipeline, not in the data."""


@dataclass(frozen=True)
class Failures:
    """Failed rows (one per row and expectation), in suite order."""

    rows: pd.DataFrame
    results: list[dict[str, Any]]
    # When run with earlier verdicts: how many rows were judged before (not put to GX
    # again), and the verdicts of the rows GX checked now.
    judged_before: int = 0
    found: Verdicts = field(default_factory=Verdicts.none)


def _uses(expectations: list[dict]) -> list[str]:
    """The columns these expectations check or quote, in suite order."""
    columns: dict[str, None] = {}
    for expectation in expectations:
        kwargs = expectation["kwargs"]
        for key in ("column", "column_A", "column_B"):
            if key in kwargs:
                columns[kwargs[key]] = None
        if "show" in expectation["meta"]:
            columns[expectation["meta"]["show"]] = None
    return list(columns)


# Expectations that judge each row by its own values alone (no uniqueness, no aggregate).
ROW_WISE = frozenset({
    "expect_column_values_to_be_in_set", "expect_column_values_to_be_between",
    "expect_column_values_to_not_be_null", "expect_column_values_to_not_match_regex",
    "expect_column_pair_values_a_to_be_greater_than_b"})


def _parameters(expectation: dict) -> dict[str, dict]:
    """The arguments of an expectation that a run's parameters give (`$PARAMETER`)."""
    return {key: value for key, value in expectation["kwargs"].items()
            if isinstance(value, dict) and "$PARAMETER" in value}


def verdicts_last(expectations: list[dict]) -> bool:
    """Whether a row whose checked values passed these expectations passes them again at
    the same or a later as-of date: each judges a row alone, and the only parameter is the
    as-of date as the latest value allowed."""
    return all(
        expectation["type"] in ROW_WISE and all(
            key == "max_value" and value == {"$PARAMETER": AS_OF}
            for key, value in _parameters(expectation).items())
        for expectation in expectations)


def _shown_columns(expectations: list[dict]) -> list[str]:
    """Columns that reasons quote without checking them (meta.show)."""
    return sorted({e["meta"]["show"] for e in expectations if "show" in e["meta"]})


# GX copies the whole batch once per single-column expectation (to drop the column's
# missing values before it looks for failures), so a run costs expectations x columns x
# rows. Below this many rows one batch per suite is cheaper (GX's fixed cost per run is
# ~30 ms); above it, each set of columns gets its own narrow batch: 5.5M case notes took
# 10.6 s as one batch and 3.5 s as narrow ones.
NARROW_BATCH_ROWS = 500_000


def _batches(expectations: list[dict], rows: int) -> list[tuple[int, ...]]:
    """Positions of the expectations to run together, one tuple per GX batch."""
    if rows < NARROW_BATCH_ROWS:
        return [tuple(range(len(expectations)))]
    by_columns: dict[tuple[str, ...], list[int]] = {}
    for position, expectation in enumerate(expectations):
        by_columns.setdefault(tuple(_uses([expectation])), []).append(position)
    return [tuple(positions) for positions in by_columns.values()]


def _raise_if_errored(name: str, expectation: dict, info: Any) -> None:
    """An expectation that raised inside GX is a pipeline fault, not a data failure."""
    raised = info.get("raised_exception") if isinstance(info, dict) else False
    if raised or (isinstance(info, dict) and any(
            isinstance(v, dict) and v.get("raised_exception") for v in info.values())):
        raise ExpectationError(f"suite {name}: {_label(expectation)} could not be evaluated: "
                               f"{info.get('exception_message') or info}")


def _label(expectation: dict) -> str:
    kwargs = expectation["kwargs"]
    column = kwargs.get("column") or f"{kwargs.get('column_A')},{kwargs.get('column_B')}"
    return f"{expectation['type']}({column})"


def _shown_value(expectation: dict, row: dict) -> str:
    kwargs = expectation["kwargs"]
    column = expectation["meta"].get("show") or kwargs.get("column") or kwargs.get("column_A")
    value = row.get(column)
    if isinstance(value, pd.Timestamp):
        return value.strftime("%Y-%m-%d")
    # Reasons quote codes, ids and dates; a longer value is likely text put in the wrong
    # column, and free text never goes into a reason.
    text = "" if value is None else str(value)
    return text if len(text) <= 20 else f"({len(text)} characters)"


def _cheap_to_check(batch: pd.DataFrame) -> pd.DataFrame:
    """The batch with pandas' nullable integers as float64.

    GX compares nullable integers row by row in Python (a million calls for a million
    events); as float64 with NaN for missing it compares whole columns.
    """
    numbers = {c: "float64" for c in batch.columns
               if pd.api.types.is_integer_dtype(batch[c].dtype)
               and isinstance(batch[c].dtype, pd.api.extensions.ExtensionDtype)}
    return batch.astype(numbers) if numbers else batch


_PARSER_LOCK = threading.Lock()


def _serialise_parameter_parsing() -> None:
    """Make GX's suite-parameter parsing safe to call from several threads.

    GX parses every `$PARAMETER` with one module-level pyparsing parser whose expression
    stack is shared, so two threads validating at once can corrupt each other's parse
    (seen here as "push_first() missing 1 required positional argument"). Parsing a
    parameter takes microseconds; running it under one lock costs nothing measurable.
    """
    from great_expectations.core import suite_parameters

    parse = suite_parameters.parse_suite_parameter
    if getattr(parse, "_chronology_serialised", False):
        return

    def serialised(*args, **kwargs):
        with _PARSER_LOCK:
            return parse(*args, **kwargs)

    serialised._chronology_serialised = True  # type: ignore[attr-defined]
    suite_parameters.parse_suite_parameter = serialised


# Modules GX imports with itself but uses only in expectations our suites do not have:
# scipy.stats for the KL divergence and Kolmogorov-Smirnov tests, altair for the KL
# divergence's chart. Deferring scipy.stats took a fifth to a quarter off GX's import
# (5.1-5.4 s -> 4.1-4.2 s on a slow machine), altair a sixth of the rest (3.5-3.7 s ->
# 2.8-3.3 s), which every run that validates pays, a rerun of a few children most of
# all. tests/test_validation.py fails if GX or our suites start to use either.
DEFERRED_MODULES = ("scipy.stats", "altair")


class _LoadedOnFirstUse(types.ModuleType):
    """Stands for a module in `sys.modules` until it is asked for something it lacks
    (any of the module's own names): the module is then imported, once, under a lock,
    so that threads asking together all get it whole, and answers. The standard
    library's `LazyLoader` is not safe between threads before Python 3.13 (another
    thread can get the module half-run: CPython gh-114763)."""

    def __init__(self, spec: importlib.machinery.ModuleSpec) -> None:
        super().__init__(spec.name)
        # What the import system reads of a module it finds in `sys.modules` (whether
        # it is still being run; its package): present, so that an import of it finds
        # it without loading it.
        self.__spec__, self.__loader__ = spec, spec.loader
        self.__package__ = spec.parent

    def __getattr__(self, name: str) -> Any:
        loaded = self.__dict__.get("_loaded")
        if loaded is None:
            with _DEFERRING:
                loaded = self.__dict__.get("_loaded")
                if loaded is None:
                    if sys.modules.get(self.__name__) is self:
                        del sys.modules[self.__name__]
                    loaded = importlib.import_module(self.__name__)
                    self.__dict__["_loaded"] = loaded
        return getattr(loaded, name)


# Taken before deferring modules, and while one deferred is loaded.
_DEFERRING = threading.RLock()


def _defer_unused_modules() -> None:
    """Put a stand-in (`_LoadedOnFirstUse`) for each of `DEFERRED_MODULES` not imported
    yet in `sys.modules`, and as its package's attribute, as an import would. Code that
    uses one still gets the whole module, loaded then."""
    for name in DEFERRED_MODULES:
        if name in sys.modules:
            continue
        try:
            spec = importlib.util.find_spec(name)
        except ModuleNotFoundError:  # its package is not installed: nothing to defer
            continue
        if spec is None:
            continue
        sys.modules[name] = module = _LoadedOnFirstUse(spec)
        parent, _, child = name.rpartition(".")
        if parent:
            setattr(sys.modules[parent], child, module)


_CONFIGURATIONS = threading.local()


def _remember_configurations() -> None:
    """Make each GX expectation build its configuration once per validation run of ours.

    GX 1.x rebuilds an expectation's `configuration` (a pydantic `dict()` and a new
    `ExpectationConfiguration`) every time it is asked, and asks ~130 times per
    expectation per run: 40% of GX's time on a small batch, where a run's cost is all
    fixed cost (285 source expectations at ~20 ms each). The expectation objects live
    for one `graph_validate` and are not changed once made, so within one of our runs
    (`SuiteRunner.run` sets the memo of its thread) the first configuration built is the
    one GX would build again. Outside our runs GX builds them as before.
    tests/test_validation.py fails if GX stops asking through this property.
    """
    from great_expectations.expectations.expectation import Expectation

    build = Expectation.configuration.fget
    if getattr(build, "_chronology_remembered", False):
        return

    def configuration(self):
        memo = getattr(_CONFIGURATIONS, "memo", None)
        if memo is None:
            return build(self)
        # Keyed by the object's id, holding the object, so that an id is not reused
        # while its entry lives; the memo goes when the run ends.
        found = memo.get(id(self))
        if found is None or found[0] is not self:
            found = memo[id(self)] = (self, build(self))
        return found[1]

    configuration._chronology_remembered = True  # type: ignore[attr-defined]
    Expectation.configuration = property(configuration)


@contextmanager
def _configurations_remembered():
    _CONFIGURATIONS.memo = {}
    try:
        yield
    finally:
        _CONFIGURATIONS.memo = None


class SuiteRunner:
    """Runs suites against pandas frames in one ephemeral GX context.

    A GX context is not safe to share between threads, so each thread gets its own.
    """

    def __init__(self) -> None:
        self._local = threading.local()

    def __reduce__(self):
        # Sent to another process (a Dask worker), a runner is that process's own: its
        # contexts belong to the threads of this one, and one runner a process keeps
        # each worker thread's GX context and suites from one task to the next.
        return (process_runner, ())

    def _context(self):
        local = self._local
        if not hasattr(local, "context"):
            with _DEFERRING:  # threads validating side by side start together
                _defer_unused_modules()
            import great_expectations as gx  # slow import (~3 s): only when validating
            from great_expectations.data_context.types.base import ProgressBarsConfig
            from great_expectations.execution_engine import pandas_execution_engine

            # This GX module sets its own logger to INFO on import and announces every
            # temporary docs folder it makes.
            logging.getLogger(ProgressBarsConfig.__module__).setLevel(logging.WARNING)
            # GX fingerprints every in-memory batch under this size (an md5 of pandas' row
            # hashes) for a batch marker we never read; it was a quarter of all validation
            # time. GX itself skips it above the threshold, so skipping it always is a path
            # GX supports. tests/test_validation.py fails if GX drops the setting.
            pandas_execution_engine.HASH_THRESHOLD = 0
            with _PARSER_LOCK:
                _serialise_parameter_parsing()
                _remember_configurations()
            local.gx = gx
            local.context = gx.get_context(mode="ephemeral")
            local.context.variables.progress_bars = ProgressBarsConfig(globally=False)
            local.batch = local.context.data_sources.add_pandas("chronology").add_dataframe_asset(
                "frame").add_batch_definition_whole_dataframe("whole")
            local.suites = {}
        return local

    def warm_up(self) -> None:
        """Import GX and build this thread's context now, e.g. before timing anything."""
        self._context()

    def _suite(self, name: str, positions: tuple[int, ...]):
        """The GX suite of these expectations of suite `name`, each tagged with its position."""
        local = self._context()
        key = (name, positions)
        if key not in local.suites:
            spec = load_suite(name)
            # GX does not promise to report results in suite order: tag each expectation.
            spec["expectations"] = [
                {**spec["expectations"][p], "meta": {**spec["expectations"][p]["meta"],
                                                     "position": p}} for p in positions]
            spec["name"] = f"{name}:{'-'.join(map(str, positions))}"
            # Not added to the context: a suite validates a batch without being stored.
            local.suites[key] = local.gx.ExpectationSuite(**spec)
        return local.suites[key]

    def _validate(self, batch, name: str, positions: tuple[int, ...],
                  parameters: dict[str, Any] | None, result_format: dict) -> list:
        """GX's results of these expectations of suite `name` on `batch`."""
        # Batch.validate, unlike a ValidationDefinition, does not serialise every result
        # into the context's results store: results live only in our records.
        with _configurations_remembered():
            return batch.validate(self._suite(name, positions),
                                  expectation_parameters=parameters or {},
                                  result_format=result_format).results

    def run(self, name: str, frame: pd.DataFrame, parameters: dict[str, Any] | None = None,
            ignore_rows: pd.Series | None = None, earlier: Earlier | None = None
            ) -> Failures:
        """Run suite `name` on `frame`. Failures of `ignore_rows` (`_row` values of rows an
        earlier step already rejected) are left out of the failures and of the counts.

        Given `earlier` verdicts (`flows/verdicts.py`) and a suite whose verdicts last
        (`verdicts_last`), rows whose checked values were judged before are not put to GX
        again: their failures are recalled. What GX found of the other rows comes back
        with the failures, for the next run."""
        ignored = set() if ignore_rows is None else set(ignore_rows.tolist())
        suite = load_suite(name)
        expectations = suite["expectations"]
        missing = [c for c in _uses(expectations) if c not in frame.columns]
        if missing:
            raise ExpectationError(f"suite {name} checks columns the data does not have: "
                                   f"{', '.join(missing)}")
        if frame.empty:
            return Failures(pd.DataFrame(columns=list(FAILURE_COLUMNS)), [])
        # (row, expectation label, rule, severity, reason, position) for each failure.
        failed: list[tuple] = []
        unexpected = dict.fromkeys(range(len(expectations)), 0)
        hashes, judged_before = None, 0
        if earlier is not None and verdicts_last(expectations):
            checked = [c for c in _uses(expectations) if c != "_row"]
            hashes = frame_hashes(frame, checked)
            known, rows, positions = earlier.recall(name, hashes)
            judged_before = int(known.sum())
            recalled = _cheap_to_check(frame[["_row", *checked]].iloc[rows])
            for row, position in zip(recalled.to_dict("records"), positions.tolist(),
                                     strict=True):
                if int(row["_row"]) not in ignored:
                    failed.append(_failure(expectations, position, row))
            frame, hashes = frame[~known], hashes[~known]
        for positions in _batches(expectations, len(frame)) if len(frame) else []:
            group = [expectations[p] for p in positions]
            shown = _shown_columns(group)
            columns = [c for c in _uses(group) if c != "_row"]
            batch = self._context().batch.get_batch(
                batch_parameters={"dataframe": _cheap_to_check(frame[["_row", *columns]])})
            if len(frame) < NARROW_BATCH_ROWS:
                # On a small batch GX's cost is its fixed cost per expectation, and asking
                # only whether each passed costs half of asking for the failing rows: so
                # ask that first, then for the rows of those that failed.
                passed = {outcome.expectation_config.meta["position"]
                          for outcome in self._validate(batch, name, positions, parameters,
                                                        {"result_format": "BOOLEAN_ONLY"})
                          if outcome.success}
                positions = tuple(p for p in positions if p not in passed)
            outcomes = self._validate(batch, name, positions, parameters, {
                "result_format": "COMPLETE", "unexpected_index_column_names": ["_row", *shown],
                "return_unexpected_index_query": False}) if positions else []
            for outcome in outcomes:
                position = outcome.expectation_config.meta["position"]
                _raise_if_errored(name, expectations[position], outcome.exception_info or {})
                failed += [_failure(expectations, position, row)
                           for row in outcome.result.get("unexpected_index_list") or []
                           if int(row["_row"]) not in ignored]
        for item in failed:
            unexpected[item[-1]] += 1
        results = [{"expectation": _label(expectation), "rule": expectation["meta"]["rule"],
                    # Our suites use no `mostly`: an expectation fails exactly when a row does.
                    "success": not unexpected[position], "unexpected": unexpected[position]}
                   for position, expectation in enumerate(expectations)]
        # Sorted back into suite order, so that a row's first failure is the suite's first.
        failed.sort(key=lambda item: (item[-1], item[0]))
        rows = pd.DataFrame([item[:-1] for item in failed],
                            columns=list(FAILURE_COLUMNS)).astype({"_row": "int64"})
        if hashes is None:
            return Failures(rows, results)
        return Failures(rows, results, judged_before=judged_before,
                        found=_found(expectations, frame, hashes, ignored, failed))


@cache
def process_runner() -> SuiteRunner:
    """The suite runner of this process, for tasks sent to it (`SuiteRunner.__reduce__`)."""
    return SuiteRunner()


def _failure(expectations: list[dict], position: int, row: dict) -> tuple:
    """A failed row as `Failures.rows` holds it, with the expectation's position."""
    expectation = expectations[position]
    meta = expectation["meta"]
    reason = _PLACEHOLDER.sub(_shown_value(expectation, row), meta["reason"])
    return (int(row["_row"]), _label(expectation), meta["rule"], meta["severity"], reason,
            position)


def _found(expectations: list[dict], checked: pd.DataFrame, hashes: np.ndarray,
           ignored: set[int], failed: list[tuple]) -> Verdicts:
    """The verdicts of the rows GX checked now that later runs may reuse: not those an
    earlier step rejected (of those, all that is known is that they were), nor those
    that failed an expectation of the as-of date (a date in the future today may not be
    tomorrow: they are checked again each run)."""
    dated = {position for position, expectation in enumerate(expectations)
             if _parameters(expectation)}
    unsure = ignored.union(item[0] for item in failed if item[-1] in dated)
    rows = checked["_row"].to_numpy(dtype=np.int64)
    judged = ~np.isin(rows, np.fromiter(unsure, np.int64, len(unsure)))
    failed_rows = np.fromiter((item[0] for item in failed), np.int64, len(failed))
    positions = np.fromiter((item[-1] for item in failed), np.int64, len(failed))
    # Recalled failures are of rows not checked now: they are not found among these.
    at = pd.Index(rows[judged]).get_indexer(failed_rows)
    return Verdicts(hashes[judged], at[at >= 0].astype(np.int64), positions[at >= 0])
