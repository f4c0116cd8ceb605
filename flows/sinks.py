"""Write a run's outputs into a new version folder and make it current in one step."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from transforms.shards import shard_of

CURRENT = "current"
BUILT = "part-0.parquet"  # in each partition of a dataset, the rows the run built
VERSIONS = "versions"
# Rows of a row group in a partition of the events and chronology datasets: small
# enough that a batch of a few thousand children reads little beyond its own rows.
PARTITION_ROW_GROUP = 1 << 16
# Columns of the events dataset that hold about one value a row: a dictionary would cost
# the writer a hash of every value and save nothing (four partitions of the 100k demo:
# 1.24 -> 0.87 s of processor time to write, files 13% smaller, without).
PLAIN_COLUMNS = frozenset({"event_id", "source_id", "source_row"})
# The run's tables, each with the order of its rows.
ROW_ORDER = {
    "rejects.parquet": ["table", "source_row"],
    "findings.parquet": ["table", "record_id"],
    "people.parquet": ["child_id"],
    "children.parquet": ["child_id"],
    "periods.parquet": ["child_id", "start_date", "kind", "period_id"],
    "fingerprints.parquet": ["child_id"],
}


def version_dir(out: Path, run_id: str) -> Path:
    path = out / VERSIONS / run_id
    path.mkdir(parents=True, exist_ok=False)
    return path


def arrow_table(frame: pd.DataFrame) -> pa.Table:
    """`frame` as Arrow, to be written as Parquet."""
    table = pa.Table.from_pandas(frame, preserve_index=False)
    if any(pa.types.is_list(field.type) for field in table.schema):
        # pandas records Arrow list columns under a dtype name it cannot read back, so
        # any reader's to_pandas() would fail: keep the plain Arrow schema instead.
        table = table.replace_schema_metadata(None)
    return table


def write_table(frame: pd.DataFrame, path: Path, **options) -> None:
    """`frame` as a Parquet file; `options` go to `pyarrow.parquet.write_table`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(arrow_table(frame), path, **options)


def write_ordered(frame: pd.DataFrame, version: Path, name: str) -> None:
    """One of the run's tables (`ROW_ORDER`), its rows in their order."""
    write_table(frame.sort_values(ROW_ORDER[name], kind="stable", ignore_index=True),
                version / name)


def partition_writing(schema: pa.Schema) -> dict:
    """How a partition of the events or chronology dataset is written, by the run and by
    the carry alike (options of `pyarrow.parquet.ParquetWriter`): statistics of the child
    id only, which readers filter on (`of_children`), and a dictionary for every column
    but `PLAIN_COLUMNS` (named by their Parquet paths: a list's values are a column of
    their own)."""
    def path(field: pa.Field) -> str:
        nested = pa.types.is_list(field.type) or pa.types.is_large_list(field.type)
        return f"{field.name}.list.element" if nested else field.name

    return {"write_statistics": ["child_id"],
            "use_dictionary": [path(field) for field in schema
                               if field.name not in PLAIN_COLUMNS]}


def write_partition(frame: pd.DataFrame, dataset: Path, shard: int) -> Path:
    """The rows a run built of one shard, as `<dataset>/shard=<n>/part-0.parquet`
    (hive-style partitions; rows carried over from the published output lie beside them,
    `flows/carry.py`), in child order and in row groups of `PARTITION_ROW_GROUP` rows.

    A reader of some children (`of_children`) then reads only the row groups that hold
    them: the pages are made a few thousand children at a time, each batch reading its
    own rows, so that a worker's memory follows the batch, not the shard."""
    if not frame["child_id"].is_monotonic_increasing:
        frame = frame.sort_values("child_id", kind="stable", ignore_index=True)
    path = dataset / f"shard={shard}" / BUILT
    path.parent.mkdir(parents=True, exist_ok=True)
    table = arrow_table(frame)
    pq.write_table(table, path, row_group_size=PARTITION_ROW_GROUP,
                   **partition_writing(table.schema))
    return path


def write_partitions(frame: pd.DataFrame, dataset: Path, unit: tuple[int, ...],
                     shards: int) -> None:
    """The rows a run built of a unit of shards, each shard's in its partition (every
    shard of the unit gets one, empty or not)."""
    if len(unit) == 1:
        write_partition(frame, dataset, unit[0])
        return
    of = shard_of(frame["child_id"], shards)
    for number in unit:
        write_partition(frame[of == number], dataset, number)


def read_partition(dataset: Path, shard: int, columns: list[str] | None = None,
                   children: list[str] | None = None, built: bool = False) -> pd.DataFrame:
    """One shard's rows of a dataset written by `write_partition` (of `children` only, if
    given; only those the run built, beside the rows it carried over, if `built`)."""
    partition = dataset / f"shard={shard}"
    return as_frame(pq.read_table(
        partition / BUILT if built else partition, columns=columns,
        filters=None if children is None else of_children(children)))


def as_frame(table: pa.Table) -> pd.DataFrame:
    """A table of a dataset as pandas. List columns stay Arrow lists: converting them to
    Python objects costs ten times the read."""
    return table.to_pandas(types_mapper=lambda kind: pd.ArrowDtype(kind)
                           if pa.types.is_list(kind) else None)


def of_children(children: list[str]) -> pc.Expression:
    """A Parquet read filter: the rows of these children. Its bounds let a reader skip
    the row groups that hold none of them, by their statistics (a set alone does not)."""
    ids = pa.array(children, pa.string())
    among = pc.is_in(pc.field("child_id"), value_set=ids)
    if not children:
        return among
    bounds = pc.min_max(ids)
    return ((pc.field("child_id") >= bounds["min"]) & (pc.field("child_id") <= bounds["max"])
            & among)


def link(old: Path | str, new: Path | str) -> None:
    """`new` as a second name of `old`'s file, or a copy where links cannot be made."""
    try:
        os.link(old, new)
    except (FileNotFoundError, FileExistsError):
        raise
    except OSError:  # another file system, or one without hard links
        shutil.copy2(old, new)


def write_json(data: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")


def make_current(out: Path, run_id: str) -> None:
    """Point `out/current` at the run's version with one atomic rename of a symlink."""
    link = out / f".{CURRENT}.{run_id}"
    if link.is_symlink():
        link.unlink()
    os.symlink(Path(VERSIONS) / run_id, link)
    os.replace(link, out / CURRENT)


def previous_first_seen(out: Path, unit: tuple[int, ...], shards: int, children: list[str]
                        ) -> pd.Series | None:
    """`first_seen_run` by entry id from the current output, for the entries of one unit
    of shards' `children`.

    Entries keep the run that first showed them, so a page can mark what is new. When the
    current output was cut into a different number of shards, all its entries are read.
    """
    current = out / CURRENT
    manifest = current / "manifest.json"
    if not manifest.exists() or not (current / "chronology").exists():
        return None
    same_cut = json.loads(manifest.read_text(encoding="utf-8")).get("shards") == shards
    paths = [current / "chronology" / f"shard={number}" for number in unit] if same_cut \
        else [current / "chronology"]
    tables = [pq.read_table(path, columns=["entry_id", "first_seen_run"],
                            filters=of_children(children)) for path in paths if path.exists()]
    if not tables:
        return None
    frame = pa.concat_tables(tables, promote_options="permissive").to_pandas(
        types_mapper=pd.ArrowDtype).drop_duplicates("entry_id")
    return pd.Series(frame["first_seen_run"].astype("str").to_numpy(),
                     index=frame["entry_id"].astype("str").to_numpy(), dtype="str")
