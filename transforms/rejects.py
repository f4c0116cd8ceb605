"""Rows the pipeline could not use, each with the rule that stopped it and why.

Every stage that drops an input row returns it here instead, so that for every
source table: rows in = rows staged + rows rejected.
"""

from __future__ import annotations

import pandas as pd

from transforms.frames import stripped

STRING_COLUMNS = {"table": "str", "record_id": "str", "child_id": "str", "rule": "str",
                  "expectation": "str", "reason": "str"}


def empty_rejects() -> pd.DataFrame:
    return pd.DataFrame({
        "table": pd.Series(dtype="str"),
        "record_id": pd.Series(dtype="str"),
        "source_row": pd.Series(dtype="int64"),
        "child_id": pd.Series(dtype="str"),
        "rule": pd.Series(dtype="str"),
        "expectation": pd.Series(dtype="str"),
        "reason": pd.Series(dtype="str"),
        "also_failed": pd.Series(dtype="object"),
    })


def rejects_for(
    table: str,
    rows: pd.DataFrame,
    key: str,
    child: str,
    rule: str,
    reason: str | pd.Series,
) -> pd.DataFrame:
    """Reject frame for `rows` of a source table, all for one rule of conforming."""
    if rows.empty:
        return empty_rejects()
    return pd.DataFrame({
        "table": table,
        "record_id": rows[key].astype("str").to_numpy(),
        "source_row": rows["_row"].to_numpy(dtype="int64"),
        # Trimmed, blank being none, whether the rows are raw or conformed: a reject
        # names its child as the chronology does.
        "child_id": stripped(rows[child]).to_numpy() if child in rows else None,
        "rule": rule,
        "expectation": rule,
        "reason": reason.to_numpy() if isinstance(reason, pd.Series) else reason,
        "also_failed": [[] for _ in range(len(rows))],
    }).astype(STRING_COLUMNS)


def concat_rejects(frames: list[pd.DataFrame]) -> pd.DataFrame:
    frames = [f for f in frames if not f.empty]
    if not frames:
        return empty_rejects()
    return pd.concat(frames, ignore_index=True)
