"""What a run read of the source: each table as parts of rows, in the order read.

A run over a large source does not hold what it read: each part is written to an Arrow
file as it arrives, and every step that needs all of a table's values (fingerprints,
marking the rows of each pass) goes through it a part at a time, each part
memory-mapped while it is used and let go after. Steps that need a few columns of the
whole table (ids, keys, dates) map just those columns: the pages of the others are never
touched, so they never take memory. Memory then stays that of a part and of a few
narrow columns, however many children the source holds.

A small read (a run for some children, the tests) keeps its parts in memory; the steps
are the same.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

# Rows of a part when a table held in memory is cut into parts, and at most of a part
# file: a 1M-row part of the largest table (case notes) is ~160 MB.
PART_ROWS = 1 << 20


@dataclass(frozen=True)
class SourceRead:
    """Each table's parts, in order: Arrow tables held in memory, or Arrow files (with
    their row counts), read memory-mapped when used. `folder` holds the files. A table
    has at least one part, if only an empty one: it tells the table's columns."""

    parts: dict[str, list[pa.Table | Path]]
    part_rows: dict[str, list[int]]
    folder: Path | None = None

    @classmethod
    def in_memory(cls, tables: dict[str, pa.Table], part_rows: int = PART_ROWS
                  ) -> SourceRead:
        """Tables held whole, cut (without copying) into parts of `part_rows` rows."""
        parts = {name: [table.slice(start, part_rows)
                        for start in range(0, table.num_rows, part_rows)] or [table]
                 for name, table in tables.items()}
        return cls(parts, {name: [part.num_rows for part in table_parts]
                           for name, table_parts in parts.items()})

    def __contains__(self, name: str) -> bool:
        return name in self.parts

    def __iter__(self) -> Iterator[str]:
        return iter(self.parts)

    def rows(self, name: str) -> int:
        return sum(self.part_rows[name])

    def starts(self, name: str) -> list[int]:
        """The position in the whole table of each part's first row."""
        starts, total = [], 0
        for rows in self.part_rows[name]:
            starts.append(total)
            total += rows
        return starts

    def part(self, name: str, number: int, mapped: bool = True) -> pa.Table:
        """Part `number` of a table. If on disk, memory-mapped, so that its pages are read
        as they are used and let go with the table returned; or, not `mapped`, read into
        memory: what must outlive the files (`discard`) must not point into them."""
        part = self.parts[name][number]
        return read_arrow_file(part, mapped) if isinstance(part, Path) else part

    def columns(self, name: str, columns: Sequence[str]) -> pa.Table:
        """Some columns of a whole table (those it has of `columns`), without copying:
        the other columns of parts on disk are not read."""
        wanted = [column for column in columns if column in self.schema(name).names]
        return pa.concat_tables([self.part(name, number).select(wanted)
                                 for number in range(len(self.parts[name]))])

    def table(self, name: str) -> pa.Table:
        """A whole table, in memory (not pointing into the files)."""
        return pa.concat_tables([self.part(name, number, mapped=False)
                                 for number in range(len(self.parts[name]))])

    def schema(self, name: str) -> pa.Schema:
        return self.part(name, 0).schema

    def discard(self) -> None:
        """Remove the part files, once the run no longer needs them."""
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)


def read_arrow_file(path: Path, mapped: bool = True) -> pa.Table:
    """An Arrow file's rows: memory-mapped (no copy, no decoding: its pages are read as
    they are used), or, not `mapped`, read into memory of their own."""
    if not mapped:
        with pa.OSFile(str(path)) as file:
            return pa.ipc.open_file(file).read_all()
    return pa.ipc.open_file(pa.memory_map(str(path))).read_all()


class PartWriter:
    """Writes a stream of batches of rows (Arrow tables) to Arrow files of at most `PART_ROWS` rows,
    `<folder>/<prefix>-<n>.arrow`, or, with no folder, keeps them as tables."""

    def __init__(self, folder: Path | None, prefix: str) -> None:
        self.folder, self.prefix = folder, prefix
        self.parts: list[pa.Table | Path] = []
        self.part_rows: list[int] = []
        self._writer: pa.ipc.RecordBatchFileWriter | None = None
        self._batches: list[pa.Table] = []
        self._rows = 0

    def write(self, batch: pa.Table) -> None:
        if self._rows and self._rows + batch.num_rows > PART_ROWS:
            self._close_part()
        if self.folder is None:
            self._batches.append(batch)
        else:
            if self._writer is None:
                path = self.folder / f"{self.prefix}-{len(self.parts)}.arrow"
                self.folder.mkdir(parents=True, exist_ok=True)
                self._writer = pa.ipc.new_file(str(path), batch.schema)
                self.parts.append(path)
            self._writer.write_table(batch)
        self._rows += batch.num_rows

    def close(self) -> None:
        """Finish the last part. A stream of no rows must have given one empty batch:
        it leaves one empty part, which tells the table's columns."""
        if self._rows or not self.part_rows:
            self._close_part()

    def abort(self) -> None:
        """Close the open file of a stream that failed (whoever reads the folder removes
        it)."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def _close_part(self) -> None:
        if self.folder is None:
            self.parts.append(pa.concat_tables(self._batches))
            self._batches = []
        elif self._writer is not None:
            self._writer.close()
            self._writer = None
        self.part_rows.append(self._rows)
        self._rows = 0
