"""Stable assignment of children to shards."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from transforms.conform import (
    births,
    conform_table,
    drop_exact_copies,
    existence_checks,
    number_rows,
    resolve_owners,
)
from transforms.rejects import concat_rejects
from transforms.ssd import PERSON_ID, PERSON_TABLE, TABLES_BY_NAME


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


@dataclass(frozen=True)
class Prepared:
    """Whole source tables ready to validate, with what their suites need to know."""

    frames: dict[str, pd.DataFrame]
    rejects: pd.DataFrame
    known: dict[tuple[str, str], pa.Array]
    births: pd.DataFrame


def known_ids(frames: dict[str, pd.DataFrame]) -> dict[tuple[str, str], pa.Array]:
    """Ids that person, parent and owner columns may point at, by (table, key).

    Taken from the whole source, so that a parent row in another shard (because its own
    person id is wrong, say) still counts as existing and its dependants are not lost.
    """
    wanted = {(target, key) for name in frames
              for _, target, key in existence_checks(TABLES_BY_NAME[name])}
    wanted.add((PERSON_TABLE, PERSON_ID))
    return {(target, key): pc.unique(pa.array(frames[target][key].dropna(), pa.string()))
            if target in frames else pa.array([], pa.string())
            for target, key in sorted(wanted)}


def prepare(raw: dict[str, pd.DataFrame]) -> Prepared:
    """Number rows, drop exact copies, find each row's child, and gather known ids.

    Duplicate keys and the existence of parents are questions about the whole table (two
    children may hold the same key), so they are settled on whole tables.
    """
    numbered: dict[str, pd.DataFrame] = {}
    rejects = []
    for name, frame in raw.items():
        checked = drop_exact_copies(TABLES_BY_NAME[name], number_rows(frame))
        numbered[name] = checked.frame
        rejects.append(checked.rejects)
    person = conform_table(TABLES_BY_NAME[PERSON_TABLE], numbered[PERSON_TABLE]).frame
    return Prepared(resolve_owners(numbered, TABLES_BY_NAME), concat_rejects(rejects),
                    known_ids(numbered), births(person))
