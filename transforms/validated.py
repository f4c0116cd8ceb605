"""Turn failed expectations into rejects and kept rows (pure: no GX here).

A row that fails several expectations gets one reject: the first failure in suite
order, with the rules of the others listed in `also_failed`. Failures with severity `warning`
keep the row and become findings. Rows an earlier step rejected (`_rejected`) already
have their reject, so their failures here are ignored.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from transforms.conform import rejected
from transforms.rejects import STRING_COLUMNS, empty_rejects
from transforms.ssd import SourceTable


@dataclass(frozen=True)
class Checked:
    keep: np.ndarray  # one boolean per row of the checked frame
    rejects: pd.DataFrame
    findings: pd.DataFrame


FINDING_COLUMNS = ("table", "record_id", "child_id", "expectation", "reason")


def empty_findings() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype="str") for c in FINDING_COLUMNS})


def apply_failures(table: SourceTable, frame: pd.DataFrame, failures: pd.DataFrame) -> Checked:
    """Which rows of `frame` to keep, with rejects and findings, by the suite's failures."""
    earlier = rejected(frame)
    failures = failures[~failures["_row"].isin(frame.loc[earlier, "_row"])]
    if failures.empty:
        return Checked(~earlier.to_numpy(), empty_rejects(), empty_findings())
    severe = failures[failures["severity"] == "reject"]
    # A rejected row is not kept, so it carries no finding.
    warned = failures[(failures["severity"] == "warning")
                      & ~failures["_row"].isin(severe["_row"])]
    rejects = empty_rejects()
    if not severe.empty:
        grouped = severe.groupby("_row", sort=True)
        first = grouped.head(1).set_index("_row")
        others = grouped["rule"].agg(lambda rules: list(rules.iloc[1:]))
        failed = _at_rows(frame, first.index, [table.key, table.child_column])
        rejects = pd.DataFrame({
            "table": table.name,
            "record_id": failed[table.key].astype("str").to_numpy(),
            "source_row": first.index.to_numpy(dtype="int64"),
            "child_id": failed[table.child_column].astype("str").to_numpy(),
            "rule": first["rule"].to_numpy(),
            "expectation": first["expectation"].to_numpy(),
            "reason": first["reason"].to_numpy(),
            "also_failed": others.loc[first.index].to_numpy(),
        }).astype(STRING_COLUMNS)

    findings = empty_findings()
    if not warned.empty:
        flagged = _at_rows(frame, warned["_row"], [table.key, table.child_column])
        findings = pd.DataFrame({
            "table": table.name,
            "record_id": flagged[table.key].astype("str").to_numpy(),
            "child_id": flagged[table.child_column].astype("str").to_numpy(),
            "expectation": warned["expectation"].to_numpy(),
            "reason": warned["reason"].to_numpy(),
        }).astype("str")

    keep = ~earlier.to_numpy() & ~frame["_row"].isin(severe["_row"]).to_numpy()
    return Checked(keep, rejects, findings)


def _at_rows(frame: pd.DataFrame, rows: pd.Series | pd.Index, columns: list[str]
             ) -> pd.DataFrame:
    """`columns` of the rows whose `_row` is in `rows`, in that order."""
    positions = pd.Index(frame["_row"]).get_indexer(rows)
    return frame[list(dict.fromkeys(columns))].take(positions)


def reject_source_rows(tables: dict[str, SourceTable], frames: dict[str, pd.DataFrame],
                       events: pd.DataFrame, failures: pd.DataFrame
                       ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Reject the source rows behind events that failed the events suite.

    A source row is used whole or not at all, so every event it gave is dropped with it.
    Returns (kept events, rejects).
    """
    severe = failures[failures["severity"] == "reject"]
    if severe.empty:
        return events, empty_rejects()
    # The events suite indexes rows by their position in `events`.
    first = severe.groupby("_row", sort=True).head(1)
    failed_events = events.iloc[first["_row"].to_numpy()].assign(
        rule=first["rule"].to_numpy(), expectation=first["expectation"].to_numpy(),
        reason=first["reason"].to_numpy())
    failed_events = failed_events.drop_duplicates(["source_table", "source_row"])
    parts = []
    for name, group in failed_events.groupby("source_table", sort=True):
        table = tables[name]
        source = _at_rows(frames[name], group["source_row"], [table.key])
        parts.append(pd.DataFrame({
            "table": name,
            "record_id": source[table.key].astype("str").to_numpy(),
            "source_row": group["source_row"].to_numpy(dtype="int64"),
            "child_id": group["child_id"].to_numpy(),
            "rule": group["rule"].to_numpy(),
            "expectation": group["expectation"].to_numpy(),
            "reason": ("event " + group["event_type"] + ": " + group["reason"]).to_numpy(),
            "also_failed": [[] for _ in range(len(group))],
        }))
    rejects = pd.concat(parts, ignore_index=True).astype(STRING_COLUMNS)
    dropped = np.zeros(len(events), dtype=bool)
    for name, rows in rejects.groupby("table")["source_row"]:
        dropped |= ((events["source_table"] == name).to_numpy()
                    & events["source_row"].isin(rows).to_numpy())
    return events[~dropped].reset_index(drop=True), rejects
