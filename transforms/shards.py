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
    # Each distinct id is hashed once: a table has far fewer children than rows
    # (5.5 million case notes' ids: 1.25 s hashed row by row, 0.53 s this way).
    codes, distinct = pd.factorize(child_ids.astype("str"))
    hashed = pd.util.hash_pandas_object(pd.Series(distinct, dtype="str"),
                                        index=False).to_numpy()
    result = np.zeros(len(codes), dtype="int64")
    named = codes >= 0
    result[named] = (hashed % np.uint64(shards)).astype("int64")[codes[named]]
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


def _strided(shards: tuple[int, ...], groups: int) -> list[tuple[int, ...]]:
    """`shards` dealt into `groups` groups, as cards are dealt: each group takes every
    `groups`-th shard, so that the groups hold about as many children each."""
    return [shards[first::groups] for first in range(groups)]


# A pass of the build holds the rows of its children of the large tables in memory as
# pandas frames, while their events and entries are made; of the children of other
# passes, only their rows of the small tables, checked once and cut into shards, and
# their large tables' rows on disk: memory follows the size of a pass.
CHILDREN_PER_PASS = 25_000


def build_passes(shards: int, children: int) -> list[tuple[int, ...]]:
    """The shards grouped into the passes of a run that builds `children` children, one
    after the other: a single pass for a run of up to `CHILDREN_PER_PASS` children."""
    everyone = tuple(range(shards))
    return _strided(everyone, max(1, min(shards, -(-children // CHILDREN_PER_PASS))))


# A unit of work (staging, scoring, shaping and two GX suites) costs about a second
# however few children it holds, and memory in proportion to how many: a run that builds
# few children builds them in fewer units than shards, of at most about this many.
CHILDREN_PER_UNIT = 10_000


def work_units(shards: tuple[int, ...], children: int) -> list[tuple[int, ...]]:
    """The `shards` of a pass grouped into its units of work, which run side by side, for
    a pass that builds `children` children: as many shards a unit as hold about
    `CHILDREN_PER_UNIT` children together, at least one (every shard in one unit for a
    small pass, one shard a unit for a large one)."""
    per_shard = children / len(shards)
    per_unit = max(1, int(CHILDREN_PER_UNIT // per_shard)) if per_shard else len(shards)
    return _strided(shards, -(-len(shards) // per_unit))


def by_unit(parts: dict[str, list[pd.DataFrame]], units: list[tuple[int, ...]]
            ) -> list[dict[str, pd.DataFrame]]:
    """Regroup each table's shard parts into one dict of tables per unit of shards.

    Every row must land in a unit: the parts of shards outside `units` (those of other
    passes) must be empty, or rows would be lost without a word."""
    covered = {number for unit in units for number in unit}
    for name, tables in parts.items():
        stray = sum(len(table) for number, table in enumerate(tables) if number not in covered)
        if stray:
            raise ValueError(f"{stray} rows of {name} are of shards outside the units "
                             f"{units}: the rows of a pass must be of its own shards")
    def joined(tables: list[pd.DataFrame], unit: tuple[int, ...]) -> pd.DataFrame:
        if len(unit) == 1:
            return tables[unit[0]]
        return pd.concat([tables[number] for number in unit])  # row labels stay unique

    return [{name: joined(tables, unit) for name, tables in parts.items()} for unit in units]


# A table of at least this many rows is validated by a task of its own; smaller ones
# share one: running a Prefect task costs ~50 ms, more than validating a small table's
# rows does (their cost is GX's fixed cost per expectation, whatever the task).
OWN_TASK_ROWS = 100_000


def table_batches(rows: dict[str, int], workers: int) -> list[tuple[str, ...]]:
    """The tables each validation task takes, largest first: each large table alone,
    then the small ones shared out among `workers` tasks, each to the lightest so far
    (a table weighing its rows plus the equivalent of its fixed cost)."""
    ordered = sorted(rows, key=lambda name: -rows[name])
    small = [name for name in ordered if rows[name] < OWN_TASK_ROWS]
    shared: list[list[str]] = [[] for _ in range(min(max(workers, 1), len(small)))]
    loads = [0] * len(shared)
    for name in small:
        lightest = loads.index(min(loads))
        shared[lightest].append(name)
        loads[lightest] += rows[name] + OWN_TASK_ROWS // 10
    return [(name,) for name in ordered if rows[name] >= OWN_TASK_ROWS] + \
        [tuple(batch) for batch in shared]
