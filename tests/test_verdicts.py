"""What source suites found of rows: kept beside each version, carried by link, merged
before the files pile up, and used only by runs of the same code at the same as-of date
or after (`flows/verdicts.py`)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from flows import sinks, verdicts
from flows.verdicts import MAX_FILES, Earlier, Verdicts, earlier, published, write_verdicts

AS_OF = pd.Timestamp("2026-03-31 23:59:59")


def _found(*hashes: int, failed: dict[int, list[int]] | None = None) -> Verdicts:
    """Verdicts of rows with these hashes, `failed` giving a hash's failed expectations."""
    pairs = [(hashes.index(h), p) for h, positions in (failed or {}).items()
             for p in positions]
    return Verdicts(np.array(hashes, dtype=np.uint64),
                    np.array([row for row, _ in pairs], dtype=np.int64),
                    np.array([p for _, p in pairs], dtype=np.int64))


def _recalled(known: Earlier, suite: str, *hashes: int) -> dict[int, list[int] | None]:
    """For each hash asked: None if never judged, else the expectations it failed."""
    asked = np.array(hashes, dtype=np.uint64)
    found, rows, positions = known.recall(suite, asked)
    failed = {h: [] for h, hit in zip(hashes, found, strict=True) if hit}
    for row, position in zip(rows, positions, strict=True):
        failed[hashes[row]].append(int(position))
    return {h: None if h not in failed else sorted(failed[h]) for h in hashes}


def _files(version, suite="ssd_contacts"):
    return sorted((version / verdicts.FOLDER / suite).glob("*.parquet"))


def test_a_version_links_the_files_it_was_given_and_adds_what_it_found(tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    write_verdicts(first, None, {"ssd_contacts": _found(5, 3, 3, 9, failed={9: [2, 0]})},
                   AS_OF, "r1")
    write_verdicts(second, first, {"ssd_contacts": _found(7, failed={7: [4]}),
                                   "ssd_cp_plans": _found(1)}, AS_OF, "r2")
    (old,) = _files(first)
    assert [p.name for p in _files(second)] == ["r1.parquet", "r2.parquet"]
    assert _files(second)[0].stat().st_ino == old.stat().st_ino  # a link, not a copy
    known = earlier(second, AS_OF)
    assert _recalled(known, "ssd_contacts", 3, 4, 7, 9, 10) == {
        3: [], 4: None, 7: [4], 9: [0, 2], 10: None}
    assert _recalled(known, "ssd_cp_plans", 1, 3) == {1: [], 3: None}
    assert _recalled(known, "ssd_person", 1) == {1: None}
    # A run that may not use them starts afresh.
    write_verdicts(tmp_path / "fresh", None, {"ssd_contacts": _found(8)}, AS_OF, "r3")
    assert _recalled(earlier(tmp_path / "fresh", AS_OF), "ssd_contacts", 3, 8) == {
        3: None, 8: []}


def test_small_files_are_merged_once_there_are_too_many(tmp_path):
    version = tmp_path / "r0"
    write_verdicts(version, None, {"ssd_contacts": _found(*range(1000), failed={7: [1]})},
                   AS_OF, "r0")
    for run in range(1, MAX_FILES + 2):
        previous, version = version, tmp_path / f"r{run}"
        write_verdicts(version, previous,
                       {"ssd_contacts": _found(5000 + run, failed={5000 + run: [run]})},
                       AS_OF + pd.Timedelta(days=run), f"r{run}")
        assert len(_files(version)) <= MAX_FILES
    # The largest (the first run's) is left alone; the merged file holds every verdict
    # and is valid from the latest date among those it merged.
    assert "r0.parquet" in [p.name for p in _files(version)]
    latest = AS_OF + pd.Timedelta(days=MAX_FILES + 1)
    recalled = _recalled(earlier(version, latest), "ssd_contacts", 6, 7,
                         *range(5001, 5000 + MAX_FILES + 2))
    assert recalled == {6: [], 7: [1], **{5000 + run: [run]
                                          for run in range(1, MAX_FILES + 2)}}
    # Runs 1 to MAX_FILES were merged by run MAX_FILES: before its date, none is used.
    merged_at = AS_OF + pd.Timedelta(days=MAX_FILES)
    assert _recalled(earlier(version, merged_at), "ssd_contacts", 5001) == {5001: [1]}
    assert _recalled(earlier(version, merged_at - pd.Timedelta(days=1)),
                     "ssd_contacts", 5001, 7) == {5001: None, 7: [1]}


def test_a_file_out_of_order_may_miss_a_row_but_never_finds_one_it_does_not_hold(tmp_path):
    path = tmp_path / "unsorted.parquet"
    pq.write_table(pa.table({"row_hash": pa.array([8, 2, 4], pa.uint64()),
                             "failed": pa.array([[], [1], []], pa.list_(pa.int16()))}), path)
    asked = np.array([*range(10), 2**64 - 1], dtype=np.uint64)
    found, rows, _ = Earlier({"ssd_contacts": [path]}).recall("ssd_contacts", asked)
    assert set(asked[found].tolist()) <= {2, 4, 8}
    assert set(asked[rows].tolist()) <= {2}
    assert earlier(tmp_path / "none", AS_OF) == Earlier()


def test_only_the_same_code_uses_the_published_verdicts_and_full_never(tmp_path):
    out = tmp_path / "out"
    version = out / sinks.VERSIONS / "r1"
    version.mkdir(parents=True)
    sinks.write_json({"code": "abc"}, version / "manifest.json")
    assert published(out, "abc", full=False) is None  # nothing published yet
    sinks.make_current(out, "r1")
    assert published(out, "abc", full=False) == version.resolve()
    assert published(out, "abc", full=True) is None
    assert published(out, "other", full=False) is None
