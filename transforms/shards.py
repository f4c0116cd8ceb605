"""Stable assignment of children to shards."""

from __future__ import annotations

import numpy as np
import pandas as pd

from transforms.ssd import TABLES_BY_NAME


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


def split(frames: dict[str, pd.DataFrame], shards: int) -> list[dict[str, pd.DataFrame]]:
    """Split validated tables into shards of children, each shard a dict like `frames`."""
    parts: list[dict[str, pd.DataFrame]] = [{} for _ in range(shards)]
    for name, frame in frames.items():
        shard = shard_of(frame[TABLES_BY_NAME[name].child_column], shards)
        for number, rows in frame.groupby(shard, sort=True):
            parts[int(number)][name] = rows
        for number in range(shards):
            parts[number].setdefault(name, frame.iloc[0:0])
    return parts
