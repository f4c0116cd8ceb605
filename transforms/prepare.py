"""Prepare source tables for validation: settle what only the whole source can tell, then
hand out the rows of one pass of shards at a time (`transforms.shards.build_passes`).

Duplicate keys and the existence of parents are questions about the whole table (two
children may hold the same key), and a row's position is its place in the whole read:
they are settled once, on the Arrow tables, and travel with each row as columns. The
rows then become pandas frames one pass at a time, so that only one pass's children are
held as pandas at once.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
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
from transforms.fingerprint import UNNAMED
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
class Marked:
    """The rows a run builds, each with what the whole source says of it: its position
    in the read (`_row`), its child where its table has no person column, how many rows
    share its key (`_key_copies`) and whether it is an exact copy of another
    (`_rejected`). In a run of one pass every table is held whole, in Arrow; in a run of
    several, only those of at most `WHOLE_TABLE_ROWS` rows, and the rows of larger ones
    wait on disk, in a file per pass, for their pass."""

    passes: list[tuple[int, ...]]  # the shards of each pass
    whole: dict[str, pa.Table]
    spilled: list[dict[str, Path]]  # per pass, the file of each large table's rows
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
        return self._prepared({name: pa.ipc.open_file(pa.memory_map(str(path))).read_all()
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


def known_ids(raw: dict[str, pa.Table]) -> dict[tuple[str, str], pa.Array]:
    """Ids that person, parent and owner columns may point at, by (table, key).

    Taken from the whole of what the run read (every row, in a run over the whole
    source, even of children it does not rebuild), so that a parent row in another shard
    (because its own person id is wrong, say) or of a child taken from the published
    output still counts as existing and its dependants are not lost.
    """
    wanted = {(target, key) for name in raw
              for _, target, key in existence_checks(TABLES_BY_NAME[name])}
    return {(target, key): pc.unique(pc.drop_null(raw[target][key]).cast(pa.string()))
            if target in raw else pa.array([], pa.string())
            for target, key in sorted(wanted)}


def mark_source(raw: dict[str, pa.Table], children_of_rows: dict[str, pa.DictionaryArray],
                known: dict[tuple[str, str], pa.Array], shards: int,
                passes: list[tuple[int, ...]], spill_to: Path | None = None,
                map_tables: Callable = map) -> Marked:
    """Number the rows, give rows of tables without a person column the child of the
    row they belong to, mark exact copies, and, in a run of several `passes`, write the
    rows of each large table to `spill_to`, a file per pass of shards.

    `children_of_rows` is each row's child as `transforms.fingerprint.row_children`
    finds it (an assessment factor belongs to the child of its assessment; a parent key
    held by rows of two children names none); `known` the ids of the whole source
    (`known_ids`). `map_tables` runs the tables; pass a thread pool's `map` to run them
    side by side. Once this returns, `raw` need not be held: what a pass needs is in
    the result or on disk.
    """
    if len(passes) > 1 and spill_to is None:
        raise ValueError("a run in several passes needs a folder for their rows")

    def mark(name: str) -> tuple[pa.Table | None, list[Path], pd.DataFrame,
                                 pd.DataFrame | None]:
        table, child = _integers_as_text(raw[name]), children_of_rows[name]
        table = table.append_column("_row", pa.array(np.arange(table.num_rows,
                                                                dtype="int64")))
        named = _named(child)
        if TABLES_BY_NAME[name].owner is not None:
            table = table.append_column(OWNER_PERSON, named.dictionary_decode())
        copies, rejects = _key_copies(TABLES_BY_NAME[name], table)
        table = table.append_column(KEY_COPIES, pa.array(copies[KEY_COPIES])).append_column(
            REJECTED, pa.array(copies[REJECTED]))
        born = _births(table) if name == PERSON_TABLE else None
        if len(passes) == 1 or table.num_rows <= WHOLE_TABLE_ROWS:
            return table, [], rejects, born
        shard = _row_shards(named, shards)
        files = [spill_to / f"pass-{number}" / f"{name}.arrow" for number in range(len(passes))]
        for path, of_pass in zip(files, passes, strict=True):
            _write(table.filter(pa.array(np.isin(shard, of_pass))), path)
        return None, files, rejects, born

    if PERSON_TABLE not in raw:
        raise ValueError(f"the source read has no {PERSON_TABLE} table: every child's "
                         "birth date comes from it")
    marked = dict(zip(raw, map_tables(mark, raw), strict=True))
    return Marked(
        passes=passes,
        whole={name: table for name, (table, _, _, _) in marked.items() if table is not None},
        spilled=[{name: files[number] for name, (_, files, _, _) in marked.items() if files}
                 for number in range(len(passes))],
        rejects=concat_rejects([rejects for _, _, rejects, _ in marked.values()]),
        known=known, births=marked[PERSON_TABLE][3],
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


def _births(person: pa.Table) -> pd.DataFrame:
    """Every child's date of birth (`transforms.conform.births`), from the columns it
    needs of the whole person table: the id and every date (a row with a date that
    cannot be read is rejected, and gives no birth)."""
    table = TABLES_BY_NAME[PERSON_TABLE]
    return births(conform_table(table, person.select(
        [PERSON_ID, *table.dates, REJECTED]).to_pandas(date_as_object=False)).frame)


def _write(table: pa.Table, path: Path) -> None:
    """`table` as an Arrow file: read back memory-mapped, without a copy or decoding."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)


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


def _key_copies(table: SourceTable, rows: pa.Table) -> tuple[dict[str, np.ndarray],
                                                              pd.DataFrame]:
    """`transforms.conform.mark_exact_copies` of a whole table, where only the few rows
    whose key another row holds too are made pandas: every other row is its key's
    only copy."""
    copies = {KEY_COPIES: np.ones(rows.num_rows, dtype="int64"),
              REJECTED: np.zeros(rows.num_rows, dtype=bool)}
    key = pc.dictionary_encode(rows[table.key]).combine_chunks()
    indices = key.indices.to_numpy(zero_copy_only=False)
    valid = ~pc.is_null(key.indices).to_numpy(zero_copy_only=False)
    held = np.bincount(indices[valid].astype("int64"), minlength=len(key.dictionary))
    shared = np.zeros(rows.num_rows, dtype=bool)
    shared[valid] = held[indices[valid].astype("int64")] > 1
    if not shared.any():
        return copies, empty_rejects()
    at = np.flatnonzero(shared)
    result = mark_exact_copies(table, rows.take(pa.array(at)).to_pandas(
        date_as_object=False))
    for column in copies:
        copies[column][at] = result.frame[column].to_numpy()
    return copies, result.rejects
