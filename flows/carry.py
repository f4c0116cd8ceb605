"""Carry children over, unchanged, from the published output into a new version.

A run for some children (`--children`), or one that found most children unchanged
(`flows/incremental.py`), builds just some. To publish, its version must still hold
every child, so every other child's rows, in every table and dataset, and their pages
are taken from the current output as they are: rows are copied, and pages and the
partitions of shards with no rebuilt child are hard links (no copy, no re-render).
"""

from __future__ import annotations

import json
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from flows import sinks
from flows.site import CHILDREN, SITE
from transforms.fingerprint import UNNAMED
from transforms.shards import shard_of

DATASETS = ("events", "chronology")


class CarryError(RuntimeError):
    """The current output cannot be combined with this run's (nothing is published)."""


@dataclass(frozen=True)
class Carried:
    from_run: str
    children: int  # children whose outputs were carried over


@dataclass(frozen=True)
class Taken:
    """Which rows of the published output a run takes: those of the children `taken`
    (a run over the whole source, which read every other row again), or of every child
    but `replaced` (a run for some children, which read only theirs)."""

    taken: frozenset[str] | None = None  # `UNNAMED` among them: rows that name no child
    replaced: frozenset[str] | None = None

    @cached_property
    def _value_set(self) -> pa.Array:
        return pa.array(sorted(self.taken if self.taken is not None else self.replaced),
                        pa.string())

    def arrow_rows(self, child_ids: pa.Array | pa.ChunkedArray) -> pa.Array:
        """Which of these rows (by their child ids) are taken."""
        if self.taken is not None:
            return pc.is_in(pc.fill_null(child_ids, UNNAMED), value_set=self._value_set)
        return pc.invert(pc.is_in(child_ids, value_set=self._value_set))

    def rows(self, child_ids: pd.Series) -> np.ndarray:
        # Arrow's hash lookup: pandas' isin turns 100,000 ids into Python strings first.
        taken = self.arrow_rows(pa.array(child_ids, pa.string()))
        return np.asarray(taken.to_numpy(zero_copy_only=False), dtype=bool)


def carry_over(previous: Path, version: Path, taken: Taken, shards: int, rules_hash: str
               ) -> Carried:
    """Add to `version` (this run's outputs for the children it built) the rows and
    pages of the output `previous` that `taken` says, unchanged."""
    manifest = json.loads((previous / "manifest.json").read_text(encoding="utf-8"))
    if manifest.get("shards") != shards:
        raise CarryError(
            f"the current output is cut into {manifest.get('shards')} shards and this run "
            f"into {shards}: rebuild some children with --shards {manifest.get('shards')}, "
            "or rebuild every child")
    if manifest.get("rules", {}).get("hash") != rules_hash:
        raise CarryError(
            f"the current output was built with rules {manifest.get('rules', {}).get('hash')} "
            f"and this run uses {rules_hash}: with other rules, rebuild every child")
    _refuse_moved_records(previous, version, taken)
    for name in sinks.ROW_ORDER:
        _merge_table(previous, version, name, taken)
    before = pd.read_parquet(previous / "children.parquet", columns=["child_id", "page_id"])
    before = before.assign(child_id=before["child_id"].astype("str"))
    kept = taken.rows(before["child_id"])
    # Shards that lose a child of the current output, or gain rows of this run's.
    changed = set(shard_of(before["child_id"][~kept], shards))
    def carry_partition(old: Path, new: Path) -> None:
        number = int(old.name.removeprefix("shard="))
        if number in changed or pq.read_metadata(new / "part-0.parquet").num_rows:
            _merge_partition(old, new, taken)
        else:  # the run wrote this shard empty: the old one is the whole of it
            shutil.rmtree(new)
            _link_tree(old, new)

    partitions = [(previous / dataset / f"shard={number}", version / dataset / f"shard={number}")
                  for dataset in DATASETS for number in range(shards)]
    with ThreadPoolExecutor(max_workers=2) as pool:  # Parquet releases the GIL
        list(pool.map(lambda pair: carry_partition(*pair), partitions))
    pages = version / SITE / CHILDREN
    pages.mkdir(parents=True, exist_ok=True)
    old_pages, new_pages = str(previous / SITE / CHILDREN), str(pages)
    names = [f"{page_id}.html" for page_id in before["page_id"][kept]]
    # Two threads, half the pages each: a link is a system call, which releases the GIL.
    with ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(lambda half: [_link(f"{old_pages}/{name}", f"{new_pages}/{name}")
                                    for name in half], (names[0::2], names[1::2])))
    return Carried(from_run=manifest["run_id"], children=int(kept.sum()))


def _refuse_moved_records(previous: Path, version: Path, taken: Taken) -> None:
    """Stop if a record of a child this run built is still on a carried child's page (a
    record moved between children, when two records of a person are merged, say):
    carrying that child over would show it on both pages."""
    new_ids = pq.read_table(version / "events", columns=["event_id"])["event_id"]
    if not len(new_ids):
        return
    old = pq.read_table(previous / "events", columns=["event_id", "child_id"],
                        filters=pc.is_in(pc.field("event_id"), value_set=pc.unique(new_ids)))
    elsewhere = sorted(set(old.filter(taken.arrow_rows(old["child_id"]))["child_id"]
                           .to_pylist()))
    if elsewhere:
        raise CarryError(
            f"records of the children rebuilt are on the published pages of "
            f"{len(elsewhere)} other child(ren) ({', '.join(elsewhere[:10])}): rebuild them "
            "too, or every child")


def _merge_table(previous: Path, version: Path, name: str, taken: Taken) -> None:
    if not (previous / name).exists():
        raise CarryError(f"the current output has no {name} (an older chronology made it): "
                         "rebuild every child")
    old = pd.read_parquet(previous / name)
    new = pd.read_parquet(version / name)
    keep = taken.rows(old["child_id"])
    if taken.replaced is not None and "record_id" in old.columns and len(new):
        # A run for some children reads again a row that names no child when its key
        # names a record of theirs (a reject whose person id is missing); keep only the
        # new one. (A run that takes children reads every row it does not take.)
        unnamed = old["child_id"].isna().to_numpy(bool) & \
            old["record_id"].notna().to_numpy(bool)
        again = pd.MultiIndex.from_frame(new[["table", "record_id"]].astype("str"))
        read_again = pd.MultiIndex.from_frame(old[["table", "record_id"]].astype("str")
                                              ).isin(again)
        keep = keep & ~(unnamed & read_again)
    kept = old[keep]
    merged = pd.concat([frame for frame in (kept, new) if len(frame)] or [new],
                       ignore_index=True)
    sinks.write_ordered(merged, version, name)


def _merge_partition(old: Path, new: Path, taken: Taken) -> None:
    old_rows = pq.read_table(old)
    kept = old_rows.filter(taken.arrow_rows(old_rows["child_id"]))
    new_rows = pq.read_table(new)
    try:
        merged = pa.concat_tables([kept, new_rows.cast(kept.schema)])
    except (pa.ArrowInvalid, pa.ArrowTypeError, ValueError) as error:
        raise CarryError(f"{new.parent.name} of the current output has columns this version "
                         f"of chronology does not write ({error}): rebuild every child"
                         ) from None
    shutil.rmtree(new)
    new.mkdir(parents=True)
    pq.write_table(merged, new / "part-0.parquet")


def _link_tree(old: Path, new: Path) -> None:
    new.mkdir(parents=True)
    for path in old.iterdir():
        _link(path, new / path.name)


def _link(old: Path | str, new: Path | str) -> None:
    """`new` as a second name of `old`'s file, or a copy where links cannot be made."""
    try:
        os.link(old, new)
    except FileNotFoundError:
        raise CarryError(f"the current output lacks {Path(old).name}: rebuild every child"
                         ) from None
    except OSError:  # another file system, or one without hard links
        shutil.copy2(old, new)
