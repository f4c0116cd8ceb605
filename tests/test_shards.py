"""Children are assigned to shards stably, and a shard holds all of a child's rows."""

from __future__ import annotations

import pandas as pd
from hypothesis import given
from hypothesis import strategies as st

from tests.conftest import conformed
from transforms.shards import by_shard, shard_of, split_table
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
    parts = by_shard({name: split_table(frame, TABLES_BY_NAME[name].child_column, 4)
                      for name, frame in frames.items()})
    seen: dict[str, int] = {}
    for number, part in enumerate(parts):
        assert set(part) == {"ssd_person", "ssd_contacts"}
        for child in set(part["ssd_person"]["pers_person_id"]) | set(
                part["ssd_contacts"]["cont_person_id"]):
            assert seen.setdefault(child, number) == number
    assert sum(len(p["ssd_contacts"]) for p in parts) == 30
