"""What source suites found of rows in earlier runs, so that a run puts to Great
Expectations only the rows it has not seen before.

GX costs about 10 ms per expectation and table whatever the number of rows, so a rerun
that rebuilds a few children paid seconds to check again rows checked the night before.
A source table's suite judges each row by the values it checks alone, with the as-of
date only as the latest date allowed (`flows.validation.verdicts_last`): a row whose
checked values passed, under the same code, at the same or an earlier as-of date,
passes again, and a row that failed an expectation that does not depend on the date
fails it again. So each run keeps, for every row it checked, a hash of the checked
values (`transforms.fingerprint.frame_hashes`) and the expectations it failed, if any;
a row that failed an expectation of the as-of date (a date in the future) is not kept,
and is checked again by each run until it passes. Only hashes and positions are kept,
no value, beside the version's own records; a failure's reason is made again from the
row itself.

Layout: `<version>/validation/verdicts/<suite>/<run-id>.parquet`, each file the columns
`row_hash` (sorted, each once) and `failed` (positions in the suite of the expectations
the row failed), and in its metadata the as-of date they were found at. A run that may
use the published output's files (built by the same code, and not `--full`) links them
into its own version and adds one file of the rows it checked itself; when a suite has
gathered more than `MAX_FILES` files, all but the largest are merged into one. A run
that may not starts afresh.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from flows import sinks

FOLDER = Path("validation") / "verdicts"
AS_OF_KEY = b"found_as_of"
# Files a suite may gather (one per run since the last merge) before they are merged.
MAX_FILES = 4


class Verdicts(NamedTuple):
    """What a suite found of some rows: each row's hash of its checked values, and each
    failure as the row (its position in `hashes`) and the expectation (its position in
    the suite)."""

    hashes: np.ndarray
    failed_rows: np.ndarray
    failed_expectations: np.ndarray

    @classmethod
    def none(cls) -> Verdicts:
        return cls(np.zeros(0, np.uint64), np.zeros(0, np.int64), np.zeros(0, np.int64))


def combined_verdicts(parts: list[Verdicts]) -> Verdicts:
    """The verdicts of the rows of several batches as of one."""
    starts = np.cumsum([0, *(len(part.hashes) for part in parts)])[:-1]
    return Verdicts(
        np.concatenate([Verdicts.none().hashes, *(part.hashes for part in parts)]),
        np.concatenate([Verdicts.none().failed_rows, *(
            part.failed_rows + start for part, start in zip(parts, starts, strict=True))]),
        np.concatenate([Verdicts.none().failed_expectations,
                        *(part.failed_expectations for part in parts)]))


@dataclass(frozen=True)
class Earlier:
    """The files of verdicts usable at this run's as-of date, by suite. A suite's files
    are read when that suite asks (tables are validated side by side)."""

    files: dict[str, list[Path]] = field(default_factory=dict)

    def recall(self, suite: str, hashes: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Which of these rows were judged before, and their failures: each as the row
        (its position in `hashes`) and the expectation (its position in the suite)."""
        found = np.zeros(len(hashes), dtype=bool)
        failed_rows, failed_expectations = [], []
        # Looked up in order: searching a file for hashes at random costs five times
        # sorting them first (3.3 s for 2.9 million rows in 5.5 million).
        order = np.argsort(hashes)
        ordered = hashes[order]
        at = np.empty(len(hashes), dtype=np.int64)
        for path in self.files.get(suite, ()):
            table = pq.read_table(path)
            known = table["row_hash"].to_numpy()
            if not len(known):
                continue
            at[order] = np.minimum(np.searchsorted(known, ordered), len(known) - 1)
            # An equal hash found is always a real match, whatever order the file is in.
            new = (known[at] == hashes) & ~found
            found |= new
            rows = np.flatnonzero(new)
            failed = table["failed"].combine_chunks().take(pa.array(at[rows]))
            failed_rows.append(rows[pc.list_parent_indices(failed).to_numpy()])
            failed_expectations.append(pc.list_flatten(failed).to_numpy().astype(np.int64))
        none = np.zeros(0, np.int64)
        return found, np.concatenate([none, *failed_rows]), \
            np.concatenate([none, *failed_expectations])


def published(out: Path, code: str, full: bool) -> Path | None:
    """The published version whose verdicts this run may use: built by the same code
    (its suites and how rows are conformed), unless the run is `full`."""
    current = out / sinks.CURRENT
    if full or not (current / "manifest.json").exists():
        return None
    manifest = json.loads((current / "manifest.json").read_text(encoding="utf-8"))
    return current.resolve() if manifest.get("code") == code else None


def earlier(previous: Path | None, as_of: pd.Timestamp) -> Earlier:
    """The verdicts of `previous` (a version, or none) that hold at `as_of`."""
    if previous is None or not (previous / FOLDER).is_dir():
        return Earlier()
    files: dict[str, list[Path]] = {}
    for folder in sorted((previous / FOLDER).iterdir()):
        for path in sorted(folder.glob("*.parquet")):
            found_at = _as_of(path)
            if found_at is not None and found_at <= as_of:
                files.setdefault(folder.name, []).append(path)
    return Earlier(files)


def write_verdicts(version: Path, previous: Path | None, new: dict[str, Verdicts],
                   as_of: pd.Timestamp, run_id: str) -> None:
    """The version's verdicts: the files of `previous` (linked), and one file per suite
    of the rows this run checked itself (`new`)."""
    suites = set(new)
    if previous is not None and (previous / FOLDER).is_dir():
        for folder in (previous / FOLDER).iterdir():
            suites.add(folder.name)
            mine = version / FOLDER / folder.name
            mine.mkdir(parents=True, exist_ok=True)
            for path in folder.glob("*.parquet"):
                sinks.link(path, mine / path.name)
    for suite in sorted(suites):
        folder = version / FOLDER / suite
        folder.mkdir(parents=True, exist_ok=True)
        verdicts = new.get(suite)
        if verdicts is not None and len(verdicts.hashes):
            _write(folder / f"{run_id}.parquet", verdicts, as_of)
        _merge_small_files(folder, run_id)


def _write(path: Path, verdicts: Verdicts, as_of: pd.Timestamp) -> None:
    """One row per distinct row hash, sorted (rows with equal checked values have equal
    verdicts), with the positions of the expectations it failed. (NumPy's `unique` is
    slow on 64-bit integers: 7 s for 5.5 million, where sorting takes 0.5 s.)"""
    ordered = np.sort(verdicts.hashes)
    first = np.ones(len(ordered), dtype=bool)
    first[1:] = ordered[1:] != ordered[:-1]
    distinct = ordered[first]
    # Each failure at its row's place in the file, once (equal rows failed alike).
    failures = np.unique(np.stack([
        np.searchsorted(distinct, verdicts.hashes[verdicts.failed_rows]),
        verdicts.failed_expectations]), axis=1)
    offsets = np.zeros(len(distinct) + 1, dtype=np.int32)
    np.cumsum(np.bincount(failures[0], minlength=len(distinct)), out=offsets[1:])
    table = pa.table({"row_hash": pa.array(distinct, pa.uint64()),
                      "failed": pa.ListArray.from_arrays(
                          pa.array(offsets), pa.array(failures[1], pa.int16()))})
    pq.write_table(table.replace_schema_metadata({AS_OF_KEY: as_of.isoformat()}), path,
                   compression="none", use_dictionary=False)  # hashes do not compress


def _read(path: Path) -> Verdicts:
    table = pq.read_table(path)
    failed = table["failed"].combine_chunks()
    return Verdicts(table["row_hash"].to_numpy(),
                    pc.list_parent_indices(failed).to_numpy().astype(np.int64),
                    pc.list_flatten(failed).to_numpy().astype(np.int64))


def _as_of(path: Path) -> pd.Timestamp | None:
    metadata = pq.read_schema(path).metadata or {}
    return pd.Timestamp(metadata[AS_OF_KEY].decode()) if AS_OF_KEY in metadata else None


def _merge_small_files(folder: Path, run_id: str) -> None:
    """All but the largest file as one, once there are more than `MAX_FILES`: valid from
    the latest as-of date among them."""
    paths = sorted(folder.glob("*.parquet"), key=lambda path: path.stat().st_size)
    if len(paths) <= MAX_FILES:
        return
    small = paths[:-1]
    as_of = max(_as_of(path) or pd.Timestamp.max for path in small)
    merged = folder / f"merged-{run_id}.parquet"
    temporary = merged.with_suffix(".tmp")
    _write(temporary, combined_verdicts([_read(path) for path in small]), as_of)
    os.replace(temporary, merged)
    for path in small:  # (a run killed here leaves some verdicts twice: no harm)
        path.unlink()
