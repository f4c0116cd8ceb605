"""Nothing is lost: for every source table, rows in = rows staged + rows rejected."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Protocol

import pandas as pd


class _Counted(Protocol):
    rows_staged: dict[str, int]
    events_by_table: dict[str, int]


class Unbalanced(RuntimeError):
    """Rows went missing or were counted twice: a fault in the pipeline, never in the data."""


def reconciliation(extracted: Mapping[str, int], outcomes: Iterable[_Counted],
                   rejects: pd.DataFrame) -> pd.DataFrame:
    """Per source table: rows extracted, staged, rejected, events out, and the balance.

    The three counts come from three places (the reader, the shards' kept rows and the
    rejects), so a row lost or duplicated on the way shows as an unbalanced table.
    """
    staged: dict[str, int] = {}
    events: dict[str, int] = {}
    for outcome in outcomes:
        for name, count in outcome.rows_staged.items():
            staged[name] = staged.get(name, 0) + count
        for name, count in outcome.events_by_table.items():
            events[name] = events.get(name, 0) + count
    rejected = rejects.groupby("table").size()
    table = pd.DataFrame({"table": sorted(extracted)})
    table["rows_in"] = table["table"].map(extracted).astype("int64")
    table["rows_staged"] = table["table"].map(staged).fillna(0).astype("int64")
    table["rows_rejected"] = table["table"].map(rejected).fillna(0).astype("int64")
    table["events"] = table["table"].map(events).fillna(0).astype("int64")
    table["balanced"] = table["rows_in"] == table["rows_staged"] + table["rows_rejected"]
    return table


def check_balanced(table: pd.DataFrame) -> None:
    broken = table[~table["balanced"]]
    if not broken.empty:
        details = "; ".join(f"{r.table}: {r.rows_in} in, {r.rows_staged} staged, "
                            f"{r.rows_rejected} rejected" for r in broken.itertuples())
        raise Unbalanced(f"source rows do not reconcile: {details}")
