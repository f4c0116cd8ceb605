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


def run_summary(counts: pd.DataFrame, rejects: pd.DataFrame, findings: pd.DataFrame,
                people: pd.DataFrame, children: list[str] | None, max_reject_share: float
                ) -> dict:
    """What a run did, for the manifest: counts, shares, status and the children found."""
    rows_in = int(counts["rows_in"].sum())
    rejected = int(counts["rows_rejected"].sum())
    share = rejected / rows_in if rows_in else 0.0
    balanced = bool(counts["balanced"].all())
    found = set(people["child_id"])
    status = "succeeded" if share <= max_reject_share and balanced else "failed"
    return {
        "status": status,
        "children_requested": children,
        "children_not_found": sorted(set(children) - found) if children else [],
        # A run for some children holds only them, so it must not replace the whole
        # current output; it stays in its version folder.
        "published": children is None and status == "succeeded",
        "rows_in": rows_in,
        "rows_rejected": rejected,
        "reject_share": round(share, 6),
        "max_reject_share": max_reject_share,
        "events": int(counts["events"].sum()),
        "children": len(found),
        "tables": counts.to_dict(orient="records"),
        "findings": _by_rule(findings),
        "rejects_by_rule": _by_rule(rejects),
    }


def _by_rule(frame: pd.DataFrame) -> list[dict]:
    return (frame.groupby(["table", "expectation"]).size().rename("rows").reset_index()
            .to_dict(orient="records"))
