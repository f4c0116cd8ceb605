"""Stable assignment of children to shards."""

from __future__ import annotations

import numpy as np
import pandas as pd


def shard_of(child_ids: pd.Series, shards: int) -> np.ndarray:
    """Shard number of each child id: the same id always lands in the same shard.

    pandas' object hash uses a fixed key, so the assignment is the same on every machine
    and every run. Rows with no child id go to shard 0, where validation rejects them.
    """
    if shards < 1:
        raise ValueError("shards must be at least 1")
    ids = child_ids.astype("str")
    hashed = pd.util.hash_pandas_object(ids.fillna(""), index=False).to_numpy()
    result = (hashed % np.uint64(shards)).astype("int64")
    result[ids.isna().to_numpy()] = 0
    return result


def split_table(frame: pd.DataFrame, child_column: str, shards: int,
                keep: np.ndarray | None = None) -> list[pd.DataFrame]:
    """The rows of one table to keep (all by default), cut into shards of children.

    This is where a table is copied: one gather puts the kept rows in shard order (a
    stable sort keeps source order within a shard), and each shard is a slice of it.
    """
    positions = np.arange(len(frame)) if keep is None else np.flatnonzero(keep)
    shard = shard_of(frame[child_column], shards)[positions]
    order = np.argsort(shard, kind="stable")
    ordered = frame.take(positions[order])
    bounds = np.searchsorted(shard[order], np.arange(shards + 1))
    return [ordered.iloc[bounds[n]:bounds[n + 1]] for n in range(shards)]


def by_shard(parts: dict[str, list[pd.DataFrame]]) -> list[dict[str, pd.DataFrame]]:
    """Regroup each table's shard parts into one dict of tables per shard."""
    shards = len(next(iter(parts.values()), []))
    return [{name: tables[number] for name, tables in parts.items()} for number in range(shards)]
