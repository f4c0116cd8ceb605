"""Children are assigned to shards stably, and a shard holds all of a child's rows."""

from __future__ import annotations

import pandas as pd
from hypothesis import given
from hypothesis import strategies as st

from tests.conftest import conformed
from transforms.shards import (
    CHILDREN_PER_PASS,
    build_passes,
    by_unit,
    shard_of,
    split_table,
    table_batches,
    work_units,
)
from transforms.ssd import TABLES_BY_NAME


@given(ids=st.lists(st.text(min_size=1, max_size=30), min_size=1, max_size=50),
       shards=st.integers(1, 64))
def test_shard_of_is_stable_and_in_range(ids, shards):
    first = shard_of(pd.Series(ids, dtype="str"), shards)
    again = shard_of(pd.Series(list(reversed(ids)), dtype="str"), shards)[::-1]
    assert ((first >= 0) & (first < shards)).all()
    assert (first == again).all()


def test_known_ids_land_in_known_shards():
    # Fixed expectations guard against an accidental change of the hash, which would
    # move every child to another shard and partition.
    ids = pd.Series(["P0000001", "P0000002", "EX0000003"], dtype="str")
    assert shard_of(ids, 8).tolist() == [3, 6, 3]
    assert shard_of(pd.Series([None], dtype="str"), 8).tolist() == [0]


def test_split_keeps_each_childs_rows_together():
    frames = conformed({
        "ssd_person": [{"pers_person_id": f"P{i}", "pers_dob": "2010-01-01"} for i in range(6)],
        "ssd_contacts": [{"cont_contact_id": f"C{i}", "cont_person_id": f"P{i % 6}",
                          "cont_contact_date": "2015-01-01"} for i in range(30)],
    })
    parts = by_unit({name: split_table(frame, TABLES_BY_NAME[name].child_column, 4)
                     for name, frame in frames.items()}, work_units((0, 1, 2, 3), 100_000))
    seen: dict[str, int] = {}
    for number, part in enumerate(parts):
        assert set(part) == {"ssd_person", "ssd_contacts"}
        for child in set(part["ssd_person"]["pers_person_id"]) | set(
                part["ssd_contacts"]["cont_person_id"]):
            assert seen.setdefault(child, number) == number
    assert sum(len(p["ssd_contacts"]) for p in parts) == 30


def test_a_small_run_builds_its_shards_in_one_unit_and_a_large_one_a_shard_a_unit():
    everyone = tuple(range(8))
    assert work_units(everyone, 980) == [everyone]
    assert work_units(everyone, 20_000) == [(0, 2, 4, 6), (1, 3, 5, 7)]
    assert work_units(everyone, 100_000) == [(n,) for n in range(8)]
    assert work_units((0, 1, 2), 0) == [(0, 1, 2)]
    assert work_units((1, 5), 25_000) == [(1,), (5,)]
    # A pass of 25,000 children in four shards: four units of about 6,250.
    assert work_units((0, 4, 8, 12), 25_000) == [(0,), (4,), (8,), (12,)]


def test_a_run_is_built_in_passes_that_share_out_every_shard_once():
    assert build_passes(8, 2_000) == [tuple(range(8))]
    assert build_passes(8, CHILDREN_PER_PASS) == [tuple(range(8))]
    assert build_passes(8, 100_000) == [(0, 4), (1, 5), (2, 6), (3, 7)]
    assert build_passes(8, 10_000_000) == [(n,) for n in range(8)]
    for shards, children in ((8, 60_000), (5, 300_000), (16, 1_000_000)):
        passes = build_passes(shards, children)
        assert sorted(n for shards_of in passes for n in shards_of) == list(range(shards))


def test_a_unit_holds_its_shards_rows_and_no_others():
    frames = conformed({
        "ssd_person": [{"pers_person_id": f"P{i}", "pers_dob": "2010-01-01"} for i in range(40)],
    })
    parts = {"ssd_person": split_table(frames["ssd_person"], "pers_person_id", 4)}
    (first, second), = [by_unit(parts, [(0, 2), (1, 3)])]
    in_first = set(first["ssd_person"]["pers_person_id"])
    assert in_first == set(parts["ssd_person"][0]["pers_person_id"]) | set(
        parts["ssd_person"][2]["pers_person_id"])
    assert not in_first & set(second["ssd_person"]["pers_person_id"])
    assert len(first["ssd_person"]) + len(second["ssd_person"]) == 40


def test_large_tables_are_validated_alone_and_small_ones_shared_out_evenly():
    rows = {"notes": 5_000_000, "contacts": 800_000, "plans": 40_000, "reviews": 30_000,
            "visits": 20_000, "empty": 0}
    batches = table_batches(rows, workers=2)
    assert batches[:2] == [("notes",), ("contacts",)]
    shared = batches[2:]
    assert len(shared) == 2 and sorted(n for b in shared for n in b) == sorted(
        ["plans", "reviews", "visits", "empty"])
    assert ("plans",) not in shared  # the largest small table does not sit alone
    # Every table in exactly one task, however many workers.
    for workers in (1, 2, 8):
        names = [n for b in table_batches(rows, workers) for n in b]
        assert sorted(names) == sorted(rows)
    assert table_batches({}, 2) == []
