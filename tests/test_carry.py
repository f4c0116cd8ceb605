"""Carrying rows over from the published output: nothing lost, nothing twice."""

from __future__ import annotations

import pandas as pd

from flows import sinks
from flows.carry import Taken, _merge_table
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
