"""Carry children over, unchanged, from the published output into a new version.

A run for some children (`--children`), or one that found most children unchanged
(`flows/incremental.py`), builds just some. To publish, its version must still hold
every child, so every other child's rows, in every table and dataset, and their pages
are taken from the current output as they are: rows are copied, and pages and the
files of partitions that lose no child are hard links (no copy, no re-render).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property, partial
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from flows import sinks
from flows.site import CHILDREN, SITE
from flows.steps import Made
from transforms.fingerprint import UNNAMED
from transforms.frames import in_set
from transforms.shards import shard_of

DATASETS = ("events", "chronology")
CARRIED = "carried-"  # the start of the name of a partition's files of carried rows
# Threads that carry partitions.
PARTITION_THREADS = 2
# A partition that has gathered this many files (links of the files of earlier runs) is
# written again as one.
MAX_FILES = 4


class CarryError(RuntimeError):
    """The current output cannot be combined with this run's (nothing is published)."""


@dataclass(frozen=True)
class Carried:
    from_run: str
    children: int  # children whose outputs were carried over
    from_code: str | None = None  # the code digest of the output they were taken from
    seconds: dict[str, float] = field(default_factory=dict)  # thread time, by kind of work


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
            if child_ids.null_count:  # (filling copies every value: only where needed)
                child_ids = pc.fill_null(child_ids, UNNAMED)
            return in_set(child_ids, self._value_set)
        return pc.invert(in_set(child_ids, self._value_set))

    def rows(self, child_ids: pd.Series) -> np.ndarray:
        # Arrow's hash lookup: pandas' isin turns 100,000 ids into Python strings first.
        taken = self.arrow_rows(pa.array(child_ids, pa.string()))
        return np.asarray(taken.to_numpy(zero_copy_only=False), dtype=bool)


def check_compatible(previous: Path, shards: int, rules_hash: str) -> dict:
    """The published output's manifest, if its children can be carried into this run's
    version: cut into the same shards, built with the same rules."""
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
    return manifest


class Carry:
    """Carrying the children `taken` from the output `previous` into `version`.

    A partition's carried rows and the carried pages do not depend on what the run builds,
    so they are carried as soon as the run knows whom it takes, on threads of their own,
    while the run validates, shapes and renders the children it builds (work that mostly
    holds the interpreter lock, where reading and writing Parquet and `ln` do not). The
    run's tables, which hold both, are merged in `merge_tables`, once the run has written
    its; `finish` waits for the rest.

    A partition of the version holds the rows the run built (`sinks.BUILT`) beside the
    rows carried, in files of their own (`carried-<n>.parquet`): a partition that lost no
    child is linked file by file; one that did is read, filtered and written again as one
    file, as is one that has gathered `MAX_FILES` files. Use as a context manager: leaving
    it waits for the threads, so nothing writes into the version after a failed run.
    """

    def __init__(self, previous: Path, version: Path, taken: Taken, shards: int,
                 rules_hash: str, ahead: PagesAhead | None = None) -> None:
        self.previous, self.version, self.taken = previous, version, taken
        published = check_compatible(previous, shards, rules_hash)
        self.from_run, self.from_code = published["run_id"], published.get("code")
        before = pd.read_parquet(previous / "children.parquet", columns=["child_id", "page_id"])
        before = before.assign(child_id=before["child_id"].astype("str"))
        kept = taken.rows(before["child_id"])
        self.children = int(kept.sum())
        # Shards that lose a child of the published output.
        dropped = before["child_id"][~kept]
        losing = set(shard_of(dropped, shards))
        # A partition holds rows of the published children only (every event names a
        # child, expectations/events.json, and children.parquet has the child of every
        # event, `transforms/children.py`; a partition that loses none is linked whole
        # on the same ground), so its rows are taken unless their child is dropped: after a
        # 1% change, 980 children to look up against, not the 99,024 taken, whose lookup
        # table each partition would build again (4.5 s of the carry's threads).
        in_partitions = Taken(replaced=frozenset(dropped)) if taken.taken is not None \
            and len(dropped) < len(taken.taken) else taken
        self._seconds = {"carry_partitions": 0.0, "carry_pages": 0.0}
        self._stop = threading.Event()
        pages = version / SITE / CHILDREN
        names = [f"{page_id}.html" for page_id in before["page_id"][kept]]
        if ahead is not None:  # most are linked already, none of the others' is kept
            names = ahead.adopt(pages, names)
        pages.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        # The partitions on two threads, alternate shards each (the one a run's own work
        # leaves a core to, both once the run waits for them), and the pages on one
        # (links into one folder wait on the folder's lock: a second thread measured
        # slower); all behind the run's own threads.
        self._pool = ThreadPoolExecutor(max_workers=PARTITION_THREADS + 1,
                                        thread_name_prefix="carry",
                                        initializer=_behind_the_run)
        self._jobs = [
            *(self._pool.submit(self._in_turn, "carry_partitions", [
                partial(_carry_partition, previous / dataset / f"shard={number}",
                        version / dataset / f"shard={number}", in_partitions,
                        number in losing)
                for number in range(first, shards, PARTITION_THREADS) for dataset in DATASETS])
              for first in range(PARTITION_THREADS)),
            self._pool.submit(self._in_turn, "carry_pages", [
                partial(_link_pages, previous / SITE / CHILDREN, pages,
                        names[start:start + LINKS_PER_CALL])
                for start in range(0, len(names), LINKS_PER_CALL)])]

    def _in_turn(self, kind: str, steps: list[Callable[[], None]]) -> None:
        """Take `steps` one after the other, unless the run is leaving."""
        clock = time.perf_counter()
        for step in steps:
            if self._stop.is_set():
                return
            step()
        with self._lock:  # thread time, summed over the threads of a kind
            self._seconds[kind] += time.perf_counter() - clock

    def __enter__(self) -> Carry:
        return self

    def __exit__(self, *_) -> None:
        self._stop.set()
        self._pool.shutdown(wait=True, cancel_futures=True)

    def merge_tables(self) -> None:
        """Merge the run's tables, once written, with the rows taken from the published
        output's (the pages of the children built are rendered from them while the
        partitions and pages are still being carried)."""
        # The check and the merges are Arrow's work, which does not hold the interpreter
        # lock: side by side. A run over the whole source needs no check: a child it
        # carries has the records it had, so a record of a child it rebuilds would be held
        # by both, and children holding one key are rebuilt (`flows/incremental.py`).
        with ThreadPoolExecutor(max_workers=3) as beside:
            moved = beside.submit(_refuse_moved_records, self.previous, self.version,
                                  self.taken) if self.taken.replaced is not None else None
            list(beside.map(lambda name: _merge_table(self.previous, self.version, name,
                                                      self.taken), sinks.ROW_ORDER))
            if moved is not None:
                moved.result()

    def finish(self) -> Carried:
        """Wait for the partitions and pages (after `merge_tables`)."""
        for job in self._jobs:
            job.result()
        _settle_partitions(self.version)
        return Carried(from_run=self.from_run, children=self.children,
                       from_code=self.from_code, seconds=dict(self._seconds))


def nothing_made(previous: Path, version: Path, shards: int) -> Made:
    """What a run that builds no child makes: no rows, in tables typed as those of the
    published output `previous`, all of whose children it carries over. A partition
    that holds no rows there keeps its (empty, typed) file of built rows, so that every
    partition of the version still reads with its columns."""
    for dataset in DATASETS:
        for number in range(shards):
            old, new = (folder / dataset / f"shard={number}" for folder in (previous, version))
            if (old / sinks.BUILT).exists() and not any(
                    pq.read_metadata(path).num_rows for path in old.glob("*.parquet")):
                new.mkdir(parents=True, exist_ok=True)
                _link(old / sinks.BUILT, new / sinks.BUILT)

    def none_of(name: str) -> pd.DataFrame:
        return pq.read_schema(_published_table(previous, name)).empty_table().to_pandas()

    return Made(rejects=none_of("rejects.parquet"), findings=none_of("findings.parquet"),
                people=none_of("people.parquet"), children=none_of("children.parquet"),
                periods=none_of("periods.parquet"),
                freshness=pd.DataFrame({"child_id": pd.Series(dtype="str"),
                                        "stale_on": pd.Series(dtype="datetime64[ns]"),
                                        "new_entries": pd.Series(dtype="int32")}),
                filtered=pd.DataFrame(), validation=[])


class PagesAhead:
    """The published output's pages, linked into a folder of the version that no page is
    written to (`AHEAD`) while the run reads and fingerprints its source, before it knows
    whom it takes: 100,000 links take seconds, mostly waiting on the file system, which
    reading the source leaves idle. The carry then keeps the links of the children it
    takes, drops the others and makes the folder the version's pages (`adopt`), before
    any page is rendered; a run that takes no child drops them all (`discard`). Linking
    stops at the first failure: the carry links whatever is missing itself."""

    def __init__(self, published: Path, version: Path) -> None:
        self.folder = version / AHEAD
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._link, args=(published,),
                                        name="pages-ahead", daemon=True)
        self._thread.start()

    def _link(self, published: Path) -> None:
        _behind_the_run()
        try:
            names = sorted(os.listdir(published))
            self.folder.mkdir(parents=True, exist_ok=True)
            for start in range(0, len(names), AHEAD_LINKS_PER_CALL):
                if self._stop.is_set():
                    return
                _link_pages(published, self.folder,
                            names[start:start + AHEAD_LINKS_PER_CALL])
        except (CarryError, OSError):
            return

    def stop(self) -> set[str]:
        """Stop linking (waiting for the call under way); the names linked so far."""
        self._stop.set()
        self._thread.join()
        return set(os.listdir(self.folder)) if self.folder.is_dir() else set()

    def adopt(self, pages: Path, wanted: list[str]) -> list[str]:
        """Make the links of `wanted` the version's folder of pages `pages` (not yet
        made); the names of `wanted` still to link."""
        linked = self.stop()
        for name in linked.difference(wanted):
            (self.folder / name).unlink()
        if self.folder.is_dir() and not pages.exists():
            pages.parent.mkdir(parents=True, exist_ok=True)
            os.rename(self.folder, pages)
        else:
            self.discard()
            linked = set()
        return [name for name in wanted if name not in linked]

    def discard(self) -> None:
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)


# The version's folder of pages linked ahead, until the carry makes it site/children.
AHEAD = ".pages-ahead"
# Pages linked ahead by one `ln`: fewer than the carry's, as the run waits for the call
# under way when it stops the linking.
AHEAD_LINKS_PER_CALL = 1000


@contextmanager
def pages_ahead(out: Path, version: Path, shards: int, rules_hash: str, code: str
                ) -> Iterator[PagesAhead | None]:
    """Link the published pages ahead (`PagesAhead`) when the published output could
    lend this run children: cut into as many shards, by the same rules and code. Leaving
    the block stops the linking."""
    current = (out / sinks.CURRENT).resolve()
    try:
        lends = check_compatible(current, shards, rules_hash).get("code") == code
    except (OSError, ValueError, CarryError):  # nothing published, or not for this run
        lends = False
    if not lends or not (current / SITE / CHILDREN).is_dir():
        yield None
        return
    ahead = PagesAhead(current / SITE / CHILDREN, version)
    try:
        yield ahead
    finally:
        ahead.stop()


def _behind_the_run() -> None:
    """Lower the priority of this thread (on Linux, a thread's own), so that the work the
    run waits for comes first and carrying takes the processor time it leaves."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
    except (AttributeError, OSError):  # not Linux, or not allowed: carry at equal priority
        pass


def _refuse_moved_records(previous: Path, version: Path, taken: Taken) -> None:
    """Stop if a record of a child this run built is still on a carried child's page (a
    record moved between children, when two records of a person are merged, say):
    carrying that child over would show it on both pages."""
    built = [pq.read_table(path, columns=["event_id"])
             for path in (version / "events").glob(f"shard=*/{sinks.BUILT}")]
    new_ids = pa.concat_tables(built, promote_options="permissive")["event_id"] if built else []
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
    """One of the run's tables with the rows `taken` from the published output's, in
    Arrow: a pandas round trip of 100,000 children's rows made Python strings of them."""
    old = pq.read_table(_published_table(previous, name))
    new = pq.read_table(version / name)
    keep = taken.arrow_rows(old["child_id"])
    if taken.replaced is not None and "record_id" in old.column_names and new.num_rows:
        # A run for some children reads again a row that names no child when its key
        # names a record of theirs (a reject whose person id is missing); keep only the
        # new one. (A run that takes children reads every row it does not take.)
        unnamed = pc.and_(pc.is_null(old["child_id"]), pc.is_valid(old["record_id"]))
        keep = pc.and_(keep, pc.invert(pc.and_(unnamed, pc.is_in(
            _record_keys(old), value_set=_record_keys(new)))))
    if not new.num_rows and pc.all(keep).as_py() is not False:
        # The published table is the whole of this one.
        (version / name).unlink()
        _link(previous / name, version / name)
        return
    kept = old.filter(keep)
    try:
        merged = pa.concat_tables([kept, new.select(kept.column_names)],
                                  promote_options="permissive")
    except (KeyError, pa.ArrowInvalid, pa.ArrowTypeError) as error:
        raise CarryError(f"{name} of the current output has other columns than this run's "
                         f"({error}): rebuild every child") from None
    order = pc.sort_indices(merged, sort_keys=[(column, "ascending")
                                               for column in sinks.ROW_ORDER[name]])
    pq.write_table(merged.take(order), version / name)


def _published_table(previous: Path, name: str) -> Path:
    """The path of one of the published output's tables, which an older chronology may
    not have made."""
    if not (previous / name).exists():
        raise CarryError(f"the current output has no {name} (an older chronology made it): "
                         "rebuild every child")
    return previous / name


def _record_keys(rows: pa.Table) -> pa.Array:
    """Each row's table and record id, as one text."""
    return pc.binary_join_element_wise(rows["table"].cast(pa.string()),
                                       rows["record_id"].cast(pa.string()), "\0")


def _carry_partition(old: Path, new: Path, taken: Taken, losing: bool) -> None:
    """The rows of one partition of the published output that `taken` says, into the
    same partition of the version, beside the rows the run built there."""
    files = sorted(path for path in old.glob("*.parquet") if pq.read_metadata(path).num_rows)
    new.mkdir(parents=True, exist_ok=True)
    if not losing and len(files) < MAX_FILES:
        for number, path in enumerate(files):
            _link(path, new / f"{CARRIED}{number}.parquet")
        return
    if not files:
        return
    written_as = pq.read_metadata(files[0]).metadata or {}
    # Columns of few distinct values are read as the dictionaries they are stored as,
    # and written back so: filtering and writing them then moves their codes, not a copy
    # of every value (which was most of the time a partition took to carry). Read back,
    # the file gives the types it was written with (`_write_as`).
    encoded = _small_dictionaries(files) if b"ARROW:schema" in written_as else []
    try:
        # On this thread only: Arrow's own threads would decode at the run's priority,
        # not behind it.
        rows = pa.concat_tables([pq.read_table(path, read_dictionary=encoded,
                                               use_threads=False) for path in files])
    except (pa.ArrowInvalid, pa.ArrowTypeError) as error:
        raise CarryError(f"{old} of the current output holds files with other columns "
                         f"({error}): rebuild every child") from None
    kept = rows.filter(taken.arrow_rows(rows["child_id"])) if losing else rows
    if kept.num_rows:
        _write_as(kept, new / f"{CARRIED}0.parquet", written_as if encoded else None)


# A column whose dictionary page is at most this size (compressed) in every row group
# has few distinct values; a larger one may have outgrown its dictionary, and reading it
# as one would hash every value again.
SMALL_DICTIONARY_BYTES = 64 * 1024


def _small_dictionaries(files: list[Path]) -> list[str]:
    """The text columns stored with a small dictionary in every row group of `files`
    (the child id aside: rows are taken by it)."""
    found: set[str] | None = None
    for path in files:
        meta = pq.read_metadata(path)
        sizes: dict[str, list[int | None]] = {}
        for group in range(meta.num_row_groups):
            for position in range(meta.num_columns):
                chunk = meta.row_group(group).column(position)
                sizes.setdefault(chunk.path_in_schema, []).append(
                    chunk.data_page_offset - chunk.dictionary_page_offset
                    if chunk.has_dictionary_page else None)
        small = {field.name for field in meta.schema.to_arrow_schema()
                 if (pa.types.is_string(field.type) or pa.types.is_large_string(field.type))
                 and all(size is not None and size <= SMALL_DICTIONARY_BYTES
                         for size in sizes.get(field.name, [None]))}
        found = small if found is None else found & small
    return sorted((found or set()) - {"child_id"})


def _write_as(rows: pa.Table, path: Path, written_as: dict | None) -> None:
    """Write `rows` as the run writes its own (`sinks.partition_writing`); those read
    with dictionaries carry the metadata of the file they came from (its Arrow schema,
    and pandas' own), so that they read back as that file did, not as dictionaries."""
    if written_as is None:
        pq.write_table(rows, path, row_group_size=sinks.PARTITION_ROW_GROUP,
                       **sinks.partition_writing(rows.schema))
        return
    with pq.ParquetWriter(path, rows.schema, store_schema=False,
                          **sinks.partition_writing(rows.schema)) as writer:
        writer.write_table(rows, row_group_size=sinks.PARTITION_ROW_GROUP)
        writer.add_key_value_metadata(written_as)


def _settle_partitions(version: Path) -> None:
    """Make each partition's built rows read as one dataset with the rows carried beside
    them: built rows whose columns differ in type (a column all missing in this run's
    rows, say, or no rows at all) are cast to the carried rows' types."""
    for dataset in DATASETS:
        for built in (version / dataset).glob(f"shard=*/{sinks.BUILT}"):
            carried = sorted(built.parent.glob(f"{CARRIED}*.parquet"))
            if not carried:
                continue
            rows = pq.read_table(built)
            schema = pq.read_schema(carried[0])
            if rows.schema.equals(schema, check_metadata=False):
                continue
            try:
                rows = rows.select(schema.names).cast(schema) if rows.num_rows \
                    else schema.empty_table()
            except (KeyError, pa.ArrowInvalid, pa.ArrowTypeError, ValueError) as error:
                raise CarryError(f"{dataset} of the current output has columns this version "
                                 f"of chronology does not write ({error}): rebuild every "
                                 "child") from None
            pq.write_table(rows, built, row_group_size=sinks.PARTITION_ROW_GROUP,
                           **sinks.partition_writing(rows.schema))


# Pages linked by one `ln`: far below the longest command line a system takes.
LINKS_PER_CALL = 5000


def _link_pages(old: Path, new: Path, names: list[str]) -> None:
    """Hard-link the files `names` of folder `old` into folder `new`.

    `ln` makes the links: a link made from Python waits for the interpreter lock after
    each system call, and beside threads running Python (the run validating what it
    builds) 100,000 links took five minutes here, against under two seconds alone and
    2.5 s by `ln` beside them."""
    try:
        done = subprocess.run(["ln", "--", *names, str(new)], cwd=old, capture_output=True,
                              check=False).returncode == 0
    except OSError:  # no `ln` here
        done = False
    if not done:  # or another file system: one at a time, copying where links fail
        for name in names:
            if not (new / name).exists():  # never write through a link made already
                _link(old / name, new / name)


def _link(old: Path | str, new: Path | str) -> None:
    """`new` as a second name of `old`'s file (`sinks.link`)."""
    try:
        sinks.link(old, new)
    except FileNotFoundError:
        raise CarryError(f"the current output lacks {Path(old).name}: rebuild every child"
                         ) from None
