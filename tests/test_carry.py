"""Carrying rows over from the published output: nothing lost, nothing twice."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from flows import sinks
from flows.carry import (
    AHEAD,
    PagesAhead,
    Taken,
    _carry_partition,
    _link_pages,
    _merge_table,
    _small_dictionaries,
    pages_ahead,
)
from transforms.fingerprint import UNNAMED


def _rejects(*rows: tuple) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["table", "record_id", "source_row", "child_id"]
                        ).astype({"record_id": "str", "child_id": "str"})


def _merged(tmp_path, old: pd.DataFrame, new: pd.DataFrame, taken: Taken) -> set[tuple]:
    previous, version = tmp_path / "previous", tmp_path / "version"
    sinks.write_ordered(old, previous, "rejects.parquet")
    sinks.write_ordered(new, version, "rejects.parquet")
    _merge_table(previous, version, "rejects.parquet", taken)
    merged = pd.read_parquet(version / "rejects.parquet")
    return {tuple(None if pd.isna(v) else v for v in row)
            for row in merged[["record_id", "source_row", "child_id"]].itertuples(index=False)}


OLD = _rejects(("notes", None, 1, "A"),       # a note of A's with no key
               ("notes", "N9", 2, None),      # a note that names no child
               ("notes", "N5", 3, "C"))
NEW = _rejects(("notes", None, 10, "B"),      # a note of B's with no key
               ("notes", "N9", 20, None))     # read again by this run


def test_a_run_for_some_children_replaces_only_theirs_and_what_it_read_again(tmp_path):
    merged = _merged(tmp_path, OLD, NEW, Taken(replaced=frozenset({"B"})))
    assert merged == {(None, 1, "A"), ("N5", 3, "C"), (None, 10, "B"), ("N9", 20, None)}


def test_a_run_that_took_children_keeps_just_theirs(tmp_path):
    merged = _merged(tmp_path, OLD, NEW, Taken(taken=frozenset({"A"})))
    assert merged == {(None, 1, "A"), (None, 10, "B"), ("N9", 20, None)}
    merged = _merged(tmp_path, OLD, NEW.iloc[:1], Taken(taken=frozenset({"A", UNNAMED})))
    assert merged == {(None, 1, "A"), ("N9", 2, None), (None, 10, "B")}


def _partition_frame(children: list[str], lists: bool = True) -> pd.DataFrame:
    frame = pd.DataFrame({
        "child_id": [child for child in children for _ in range(3)],
        "event_id": [f"{child}-{n}" for child in children for n in range(3)],
        "event_type": ["contact", "referral", None] * len(children),
        "age_days": pd.array([1, None, 3] * len(children), dtype="Int64"),
        "seen": pd.array([True, False, None] * len(children), dtype="boolean"),
        "reasons": [["a"], [], ["b", "c"]] * len(children),
    })
    # With a list column, as the chronology, the file keeps no pandas metadata.
    return frame if lists else frame.drop(columns="reasons")


@pytest.mark.parametrize("lists", [True, False])
def test_a_carried_partition_reads_back_as_the_published_one_did(tmp_path, lists):
    """Rows carried through dictionaries read back with the published file's types,
    in Arrow and in pandas, and only the children taken are there."""
    old, new = tmp_path / "old" / "shard=0", tmp_path / "new" / "shard=0"
    children = [f"C{n}" for n in range(50)]
    sinks.write_partition(_partition_frame(children[:30], lists), tmp_path / "old", 0)
    (old / sinks.BUILT).rename(old / "carried-0.parquet")
    sinks.write_partition(_partition_frame(children[30:], lists), tmp_path / "old", 0)
    # The event id has a value a row, and no dictionary (`sinks.PLAIN_COLUMNS`).
    assert _small_dictionaries(sorted(old.glob("*.parquet"))) == ["event_type"]
    taken = Taken(taken=frozenset(children[::2]))
    _carry_partition(old, new, taken, losing=True)
    # Written as the run writes its own partitions.
    written = pq.read_metadata(new / "carried-0.parquet").row_group(0)
    chunks = {written.column(i).path_in_schema: written.column(i)
              for i in range(written.num_columns)}
    assert not chunks["event_id"].has_dictionary_page
    assert chunks["event_type"].has_dictionary_page
    assert [path for path, chunk in chunks.items() if chunk.is_stats_set] == ["child_id"]

    published = pq.read_table(old)
    expected = published.filter(taken.arrow_rows(published["child_id"]))
    carried = pq.read_table(new / "carried-0.parquet")
    assert carried.schema.equals(expected.schema, check_metadata=True)
    assert carried.equals(expected)
    assert pd.read_parquet(new / "carried-0.parquet").equals(
        expected.to_pandas().reset_index(drop=True))
    assert set(carried["child_id"].to_pylist()) == set(children[::2])


def test_a_partition_that_loses_no_child_is_linked_not_written(tmp_path):
    old, new = tmp_path / "old" / "shard=0", tmp_path / "new" / "shard=0"
    path = sinks.write_partition(_partition_frame(["A", "B"]), tmp_path / "old", 0)
    _carry_partition(old, new, Taken(taken=frozenset({"A", "B"})), losing=False)
    assert (new / "carried-0.parquet").stat().st_ino == path.stat().st_ino


def test_pages_are_linked_and_a_page_there_already_is_left_as_it_is(tmp_path):
    old, new = tmp_path / "old", tmp_path / "new"
    old.mkdir()
    new.mkdir()
    for name in ("a.html", "b.html", "c.html"):
        (old / name).write_text(name)
    (new / "b.html").write_text("rendered by this run")
    _link_pages(old, new, ["a.html", "b.html", "c.html"])
    assert (new / "a.html").stat().st_ino == (old / "a.html").stat().st_ino
    assert (new / "c.html").stat().st_ino == (old / "c.html").stat().st_ino
    assert (new / "b.html").read_text() == "rendered by this run"
    assert (old / "b.html").read_text() == "b.html"


def _published_pages(tmp_path, count: int = 30) -> Path:
    pages = tmp_path / "published" / "site" / "children"
    pages.mkdir(parents=True)
    for number in range(count):
        (pages / f"p{number}.html").write_text(f"<p>page {number}</p>")
    return pages


def test_pages_linked_ahead_keep_only_the_children_taken(tmp_path):
    published = _published_pages(tmp_path)
    version = tmp_path / "version"
    ahead = PagesAhead(published, version)
    ahead._thread.join()  # linked before the run knows whom it takes (else stopped there)
    wanted = [f"p{number}.html" for number in range(0, 30, 2)] + ["p99.html"]
    target = version / "site" / "children"
    still = ahead.adopt(target, wanted)
    assert still == ["p99.html"]  # not published: the carry must say so itself
    assert sorted(p.name for p in target.iterdir()) == sorted(wanted[:-1])
    for name in wanted[:-1]:  # links of the published pages, not copies
        assert (target / name).stat().st_ino == (published / name).stat().st_ino
    assert not (version / AHEAD).exists()
    assert not [t for t in threading.enumerate() if t.name == "pages-ahead"]


def test_pages_linked_ahead_are_all_dropped_when_no_child_is_taken(tmp_path):
    published = _published_pages(tmp_path)
    version = tmp_path / "version"
    ahead = PagesAhead(published, version)
    ahead.discard()
    assert not (version / AHEAD).exists()
    assert len(list(published.iterdir())) == 30  # the published pages are untouched
    assert all(p.stat().st_nlink == 1 for p in published.iterdir())


def test_pages_are_linked_ahead_only_from_an_output_that_could_lend_children(tmp_path):
    out = tmp_path / "out"
    version = out / sinks.VERSIONS / "run-1"
    _published_pages(tmp_path)
    version.mkdir(parents=True)
    os.rename(tmp_path / "published" / "site", version / "site")
    os.symlink(Path(sinks.VERSIONS) / "run-1", out / sinks.CURRENT)
    sinks.write_json({"shards": 2, "code": "c1", "rules": {"hash": "r1"}},
                     version / "manifest.json")
    new = out / sinks.VERSIONS / "run-2"
    for shards, code, rules in ((3, "c1", "r1"), (2, "c2", "r1"), (2, "c1", "r2")):
        with pages_ahead(out, new, shards, rules, code) as ahead:
            assert ahead is None
    with pages_ahead(out, new, 2, "r1", "c1") as ahead:
        assert ahead is not None
        ahead._thread.join()
    assert len(list((new / AHEAD).iterdir())) == 30
    with pages_ahead(tmp_path / "nothing-published-yet", new, 2, "r1", "c1") as ahead:
        assert ahead is None
