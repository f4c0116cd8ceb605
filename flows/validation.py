"""A thin runner for the Great Expectations suites in `expectations/`.

Row-level failures come back as a frame of failed rows with the rule and a reason;
an expectation that *errors* (bad configuration, a type GX cannot compare) is a
pipeline fault and raises, because its silence would pass bad data as good.
"""

from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass
from typing import Any

import pandas as pd

from expectations import load_suite

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


def _uses(suite: dict) -> dict[str, set[str]]:
    """Each column the suite checks, in suite order, with the expectation types that do."""
    uses: dict[str, set[str]] = {}
    for expectation in suite["expectations"]:
        kwargs = expectation["kwargs"]
        for key in ("column", "column_A", "column_B"):
            if key in kwargs:
                uses.setdefault(kwargs[key], set()).add(expectation["type"])
    return uses


def _shown_columns(suite: dict) -> list[str]:
    """Columns that reasons quote without checking them (meta.show)."""
    return sorted({e["meta"]["show"] for e in suite["expectations"] if "show" in e["meta"]})


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


# Expectations that read a categorical as they read text.
_CATEGORY_SAFE = {"expect_column_values_to_not_be_null", "expect_column_values_to_be_in_set"}


def _cheap_to_check(batch: pd.DataFrame, suite: dict) -> pd.DataFrame:
    """The batch in the dtypes GX checks fastest: categoricals for text where every check
    of the column allows it, float64 for nullable integers.

    GX fingerprints every batch by hashing all its values; text hashes row by row while
    a categorical hashes its few distinct values once (4 s against 1 s for 2M rows here).
    Uniqueness, JSON and regex checks need the text itself, so their columns stay text.
    """
    uses = _uses(suite)
    text = {c: "category" for c in batch.columns if pd.api.types.is_string_dtype(batch[c])
            and uses.get(c, set()) <= _CATEGORY_SAFE}
    # GX compares pandas' nullable integers row by row in Python (a million calls for a
    # million events); as float64 with NaN for missing it compares whole columns.
    numbers = {c: "float64" for c in batch.columns
               if pd.api.types.is_integer_dtype(batch[c].dtype)
               and isinstance(batch[c].dtype, pd.api.extensions.ExtensionDtype)}
    changes = {**text, **numbers}
    return batch.astype(changes) if changes else batch


class SuiteRunner:
    """Runs suites against pandas frames in one ephemeral GX context.

    A GX context is not safe to share between threads, so each thread gets its own.
    """

    def __init__(self) -> None:
        self._local = threading.local()

    def _context(self):
        local = self._local
        if not hasattr(local, "context"):
            import great_expectations as gx  # slow import (~4 s): only when validating
            from great_expectations.data_context.types.base import ProgressBarsConfig

            # This GX module sets its own logger to INFO on import and announces every
            # temporary docs folder it makes.
            logging.getLogger(ProgressBarsConfig.__module__).setLevel(logging.WARNING)
            local.gx = gx
            local.context = gx.get_context(mode="ephemeral")
            local.context.variables.progress_bars = ProgressBarsConfig(globally=False)
            local.asset = local.context.data_sources.add_pandas("chronology").add_dataframe_asset(
                "frame")
            local.batch = local.asset.add_batch_definition_whole_dataframe("whole")
            local.definitions = {}
        return local

    def warm_up(self) -> None:
        """Import GX and build this thread's context now, e.g. before timing anything."""
        self._context()

    def _definition(self, name: str):
        local = self._context()
        if name not in local.definitions:
            gx = local.gx
            spec = load_suite(name)
            # GX does not promise to report results in suite order: tag each expectation.
            for position, expectation in enumerate(spec["expectations"]):
                expectation["meta"] = {**expectation["meta"], "position": position}
            suite = local.context.suites.add(gx.ExpectationSuite(**spec))
            local.definitions[name] = local.context.validation_definitions.add(
                gx.ValidationDefinition(name=name, data=local.batch, suite=suite))
        return local.definitions[name]

    def run(self, name: str, frame: pd.DataFrame, parameters: dict[str, Any] | None = None
            ) -> Failures:
        suite = load_suite(name)
        shown = _shown_columns(suite)
        checked = list(_uses(suite))
        needed = checked + [c for c in shown if c not in checked]
        columns = [c for c in needed if c in frame.columns]
        missing = [c for c in needed if c not in frame.columns]
        if missing:
            raise ExpectationError(f"suite {name} checks columns the data does not have: "
                                   f"{', '.join(missing)}")
        if frame.empty:
            return Failures(pd.DataFrame(columns=list(FAILURE_COLUMNS)), [])
        batch = _cheap_to_check(frame[["_row", *[c for c in columns if c != "_row"]]], suite)
        result = self._definition(name).run(
            batch_parameters={"dataframe": batch},
            expectation_parameters=parameters or {},
            result_format={"result_format": "COMPLETE",
                           "unexpected_index_column_names": ["_row", *shown],
                           "return_unexpected_index_query": False},
        )
        failed: list[tuple] = []
        # Sorted back into suite order, so that a row's first failure is the suite's first.
        summaries: list[dict[str, Any]] = []
        for outcome in result.results:
            expectation = suite["expectations"][outcome.expectation_config.meta["position"]]
            info = outcome.exception_info or {}
            raised = info.get("raised_exception") if isinstance(info, dict) else False
            if raised or (isinstance(info, dict) and any(
                    isinstance(v, dict) and v.get("raised_exception") for v in info.values())):
                raise ExpectationError(
                    f"suite {name}: {_label(expectation)} could not be evaluated: "
                    f"{info.get('exception_message') or info}")
            unexpected = outcome.result.get("unexpected_index_list") or []
            summaries.append({"expectation": _label(expectation),
                              "rule": expectation["meta"]["rule"],
                              "success": bool(outcome.success),
                              "unexpected": len(unexpected)})
            meta = outcome.expectation_config.meta
            for row in unexpected:
                reason = _PLACEHOLDER.sub(_shown_value(expectation, row), meta["reason"])
                failed.append((int(row["_row"]), _label(expectation), meta["rule"],
                               meta["severity"], reason, meta["position"]))
        failed.sort(key=lambda item: item[-1])
        rows = pd.DataFrame([item[:-1] for item in failed], columns=list(FAILURE_COLUMNS))
        return Failures(rows.astype({"_row": "int64"}), summaries)
