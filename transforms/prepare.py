"""Prepare source tables for validation: settle what only the whole source can tell, then
hand out the rows of one pass of shards at a time (`transforms.shards.build_passes`).

Duplicate keys and the existence of parents are questions about the whole table (two
children may hold the same key), and a row's position is its place among the rows built:
they are settled once, from the key and id columns of the whole read, and travel with
each row as columns. The read is gone through a part at a time (`transforms.parts`), and
the rows become pandas frames one pass at a time, so that neither the whole read nor
more than one pass's children are held at once.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from transforms.conform import (
    KEY_COPIES,
    OWNER_PERSON,
    REJECTED,
    births,
    conform_table,
    existence_checks,
    mark_exact_copies,
)
from transforms.fingerprint import UNNAMED, column_hashes, held_twice, trimmed
from transforms.parts import SourceRead, read_arrow_file
from transforms.rejects import concat_rejects, empty_rejects
from transforms.shards import shard_of
from transforms.ssd import PERSON_ID, PERSON_TABLE, TABLES_BY_NAME, SourceTable


@dataclass(frozen=True)
class Prepared:
    """The source tables of one pass, ready to validate, with what their suites need."""

    frames: dict[str, pd.DataFrame]
    known: dict[tuple[str, str], pa.Array]
    births: pd.DataFrame

    def largest_first(self) -> list[str]:
        """Table names, most rows first: the order in which to hand tables to workers,
        so that the largest does not start last and run on alone."""
        return sorted(self.frames, key=lambda name: -len(self.frames[name]))


@dataclass(frozen=True)
class Copies:
    """What `transforms.conform.mark_exact_copies` found of the few rows of a table whose
    key another row holds too, by position among the rows built (`_row`); every other
    row is its key's only copy."""

    rows: np.ndarray        # positions, ascending...
    key_copies: np.ndarray  # ...how many differing rows hold each one's key...
    rejected: np.ndarray    # ...and whether it is an exact copy of an earlier row

    def columns(self, table: pa.Table) -> pa.Table:
        """`table` (rows in `_row` order) with its `_key_copies` and `_rejected`."""
        rows = table["_row"].to_numpy()
        copies = np.ones(len(rows), dtype="int64")
        rejected = np.zeros(len(rows), dtype=bool)
        at = np.searchsorted(rows, self.rows)
        found = at < len(rows)
        found[found] = rows[at[found]] == self.rows[found]
        copies[at[found]] = self.key_copies[found]
        rejected[at[found]] = self.rejected[found]
        return table.append_column(KEY_COPIES, pa.array(copies)).append_column(
            REJECTED, pa.array(rejected))


@dataclass(frozen=True)
class Marked:
    """The rows a run builds, each with what the whole source says of it: its position
    among them (`_row`), its child where its table has no person column, how many rows
    share its key (`_key_copies`) and whether it is an exact copy of another
    (`_rejected`). In a run of one pass every table is held whole, in Arrow; in a run of
    several, only those of at most `WHOLE_TABLE_ROWS` rows, and the rows of larger ones
    wait on disk, in a file per pass, for their pass."""

    passes: list[tuple[int, ...]]  # the shards of each pass
    whole: dict[str, pa.Table]
    spilled: list[dict[str, Path]]  # per pass, the file of each large table's rows
    copies: dict[str, Copies]  # of the large tables
    rejects: pd.DataFrame  # the exact copies
    known: dict[tuple[str, str], pa.Array]
    births: pd.DataFrame  # every child's date of birth
    folder: Path | None = None  # where the files of the passes are

    def whole_tables(self) -> Prepared:
        """The tables held whole, as pandas frames. They are handed over once: their
        Arrow copies are let go, as the source read was."""
        whole = dict(self.whole)
        self.whole.clear()
        return self._prepared(whole)

    def pass_tables(self, number: int) -> Prepared:
        """The large tables' rows of the children of pass `number`, as pandas frames."""
        return self._prepared({name: self.copies[name].columns(read_arrow_file(path))
                               for name, path in self.spilled[number].items()})

    def _prepared(self, tables: dict[str, pa.Table]) -> Prepared:
        return Prepared({name: table.to_pandas(date_as_object=False)
                         for name, table in tables.items()}, self.known, self.births)

    def discard(self) -> None:
        """Remove the files of the passes, once built."""
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)


# A table of more rows than this is made pandas and checked one pass at a time; a
# smaller one whole, once: each check of a table costs GX a fixed ~30 ms plus ~10 ms per
# expectation (docs/pipeline.md), which four passes of 29 tables would pay four times.
WHOLE_TABLE_ROWS = 250_000


def known_ids(read: SourceRead) -> dict[tuple[str, str], pa.Array]:
    """Ids that person, parent and owner columns may point at, by (table, key).

    Taken from the whole of what the run read (every row, in a run over the whole
    source, even of children it does not rebuild), so that a parent row in another shard
    (because its own person id is wrong, say) or of a child taken from the published
    output still counts as existing and its dependants are not lost.
    """
    wanted = {(target, key) for name in read
              for _, target, key in existence_checks(TABLES_BY_NAME[name])}
    # Trimmed, blank being none, as the references looked up in them: a person id or key
    # held padded (" P1 ", as CHAR columns come) is P1.
    return {(target, key): pc.unique(pc.drop_null(trimmed(read.columns(target, [key])[key])))
            if target in read else pa.array([], pa.string())
            for target, key in sorted(wanted)}


def mark_source(read: SourceRead, children_of_rows: dict[str, pa.DictionaryArray],
                known: dict[tuple[str, str], pa.Array], shards: int,
                passes: list[tuple[int, ...]], spill_to: Path | None = None,
                map_tables: Callable = map, keep: dict[str, np.ndarray] | None = None
                ) -> Marked:
    """Number the rows to build, give rows of tables without a person column the child
    of the row they belong to, mark exact copies, and, in a run of several `passes`,
    write the rows of each large table to `spill_to`, a file per pass of shards.

    Each table is gone through a part at a time (`transforms.parts`), so that a large
    source read is never held whole. `keep` says, by table, which rows of the read to
    build (all, if None: the others are those of children taken from the published
    output); `children_of_rows` is each row's child as
    `transforms.fingerprint.row_children` finds it (an assessment factor belongs to the
    child of its assessment; a parent key held by rows of two children names none);
    `known` the ids of the whole source (`known_ids`). `map_tables` runs the tables;
    pass a thread pool's `map` to run them side by side. Once this returns, `read` need
    not be held: what a pass needs is in the result or on disk.
    """
    if len(passes) > 1 and spill_to is None:
        raise ValueError("a run in several passes needs a folder for their rows")
    if PERSON_TABLE not in read:
        raise ValueError(f"the source read has no {PERSON_TABLE} table: every child's "
                         "birth date comes from it")

    def kept(name: str) -> np.ndarray | None:
        return None if keep is None else keep[name]

    def mark(name: str) -> tuple[pa.Table | None, list[Path], Copies, pd.DataFrame]:
        spec, child, rows_kept = TABLES_BY_NAME[name], children_of_rows[name], kept(name)
        shared = _shared_keys(spec, read, rows_kept)
        built = read.rows(name) if rows_kept is None else int(rows_kept.sum())
        spill = len(passes) > 1 and built > WHOLE_TABLE_ROWS
        files = [spill_to / f"pass-{number}" / f"{name}.arrow"
                 for number in range(len(passes))] if spill else []
        with ExitStack() as writers:
            opened: list[pa.ipc.RecordBatchFileWriter] = []
            held, shared_rows, offset = [], [], 0
            for number, start in enumerate(read.starts(name)):
                length = read.part_rows[name][number]
                # A table held whole outlives the read's files: its parts are read into
                # memory, not mapped; unless only some rows are built, which the filter
                # below copies out of the mapped file (the other rows' pages are never
                # read: a 1% rerun's marking read 1.5 GB of files for 90,000 rows). The
                # parts hold no dictionary-encoded column, whose dictionary a filter
                # would leave in the map.
                part = read.part(name, number, mapped=spill or rows_kept is not None)
                part_child = child.slice(start, length)
                if rows_kept is not None:
                    mask = pa.array(rows_kept[start:start + length])
                    part, part_child = part.filter(mask), part_child.filter(mask)
                part = _integers_as_text(part)  # the rows kept only
                part = part.append_column("_row", pa.array(
                    np.arange(offset, offset + part.num_rows, dtype="int64")))
                named = _named(part_child)
                if spec.owner is not None:
                    part = part.append_column(OWNER_PERSON, named.dictionary_decode())
                mine = shared[(shared >= offset) & (shared < offset + part.num_rows)]
                if len(mine):
                    shared_rows.append(part.take(pa.array(mine - offset)))
                offset += part.num_rows
                if not spill:
                    held.append(part)
                    continue
                if not opened:
                    opened = [writers.enter_context(_writer(path, part.schema))
                              for path in files]
                shard = _row_shards(named, shards)
                for writer, of_pass in zip(opened, passes, strict=True):
                    writer.write_table(part.filter(pa.array(np.isin(shard, of_pass))))
        copies, rejects = _copies(spec, shared, shared_rows)
        # A table has at least one part (`transforms.parts`), if only an empty one.
        whole = None if spill else copies.columns(pa.concat_tables(held))
        return whole, files, copies, rejects

    marked = dict(zip(read, map_tables(mark, read), strict=True))
    return Marked(
        passes=passes,
        whole={name: table for name, (table, *_) in marked.items() if table is not None},
        spilled=[{name: files[number] for name, (_, files, *_) in marked.items() if files}
                 for number in range(len(passes))],
        copies={name: copies for name, (_, files, copies, *_) in marked.items() if files},
        rejects=concat_rejects([rejects for *_, rejects in marked.values()]),
        known=known, births=_births(read, kept(PERSON_TABLE), marked[PERSON_TABLE][2]),
        folder=spill_to if len(passes) > 1 else None)


def _integers_as_text(table: pa.Table) -> pa.Table:
    """Integer columns of a typed source (a database's INT) as text. As pandas, an
    integer column becomes float where it holds a gap, so `2` would read "2.0" in a
    pass with a missing value and "2" in one without."""
    for position, field in enumerate(table.schema):
        if pa.types.is_integer(field.type):
            table = table.set_column(position, field.name,
                                     pc.cast(table.column(position), pa.string()))
    return table


def _births(read: SourceRead, keep: np.ndarray | None, copies: Copies) -> pd.DataFrame:
    """Every child's date of birth (`transforms.conform.births`), from the columns it
    needs of the person rows built: the id and every date (a row with a date that
    cannot be read is rejected, and gives no birth), and which rows are exact copies."""
    table = TABLES_BY_NAME[PERSON_TABLE]
    person = _integers_as_text(read.columns(PERSON_TABLE, [PERSON_ID, *table.dates]))
    if keep is not None:
        person = person.filter(pa.array(keep))
    person = copies.columns(person.append_column("_row", pa.array(
        np.arange(person.num_rows, dtype="int64"))))
    return births(conform_table(table, person.select(
        [PERSON_ID, *table.dates, REJECTED]).to_pandas(date_as_object=False)).frame)


@contextmanager
def _writer(path: Path, schema: pa.Schema) -> Iterator[pa.ipc.RecordBatchFileWriter]:
    """An Arrow file of a pass's rows: read back memory-mapped, without a copy or
    decoding."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, schema) as writer:
        yield writer


def _named(child: pa.DictionaryArray) -> pa.DictionaryArray:
    """Each row's child, missing where it names none."""
    names = child.dictionary
    return pa.DictionaryArray.from_arrays(
        child.indices, pc.if_else(pc.equal(names, UNNAMED), pa.scalar(None, pa.string()),
                                  names))


def _row_shards(child: pa.DictionaryArray, shards: int) -> np.ndarray:
    """The shard of each row's child (shard 0 for a row that names none, as in
    `transforms.shards.shard_of`), each child hashed once."""
    return shard_of(child.dictionary.to_pandas(), shards)[
        child.indices.to_numpy(zero_copy_only=False)]


def _shared_keys(table: SourceTable, read: SourceRead, keep: np.ndarray | None
                 ) -> np.ndarray:
    """The positions among the rows built of those whose key another of them may hold
    too: a superset of those that do, which `_copies` checks by the keys themselves.

    Keys are hashed to 64 bits a part at a time, so that what is held of the whole table
    is 8 bytes a row, not its keys and a hash table of them (which took ~1 GB for the 4.4
    million case notes of the 100k-child demo). Two keys of one hash are both checked,
    so a collision (for 4.4 million keys, a chance of about one in two million) only
    has a row checked for nothing."""
    hashes, valid = [], []
    for number, start in enumerate(read.starts(table.name)):
        key = read.part(table.name, number).column(table.key)
        if keep is not None:
            key = key.filter(pa.array(keep[start:start + len(key)]))
        # The rows built only, trimmed, blank being none, as `mark_exact_copies` compares.
        key = trimmed(key)
        hashes.append(column_hashes(key, distinct=True))
        valid.append(pc.is_valid(key).to_numpy(zero_copy_only=False))
    hashes, valid = np.concatenate(hashes), np.concatenate(valid)
    shared = np.zeros(len(hashes), dtype=bool)
    shared[valid] = held_twice(hashes[valid])
    return np.flatnonzero(shared)


def _copies(table: SourceTable, shared: np.ndarray, rows: list[pa.Table]
            ) -> tuple[Copies, pd.DataFrame]:
    """`transforms.conform.mark_exact_copies` of a whole table, where only the few rows
    whose key another row holds too (`shared`, and their `rows`) are made pandas."""
    if not len(shared):
        return Copies(shared, np.ones(0, dtype="int64"), np.zeros(0, dtype=bool)), \
            empty_rejects()
    result = mark_exact_copies(table, pa.concat_tables(rows).to_pandas(date_as_object=False))
    return Copies(shared, result.frame[KEY_COPIES].to_numpy(dtype="int64"),
                  result.frame[REJECTED].to_numpy(dtype=bool)), result.rejects
