"""The frame helpers that move the large tables through pyarrow."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from transforms.frames import arrow_text, in_set, lookup, per_distinct
from transforms.shards import split_table


def test_lookup_finds_each_key_and_leaves_unknown_keys_missing():
    births = pd.Series(pd.to_datetime(["2010-01-01", "2012-06-30"]), index=["P1", "P2"],
                       dtype="datetime64[ns]")
    keys = pd.Series(["P2", "P9", None, "P1"], index=[10, 11, 12, 13], dtype="str")
    found = lookup(keys, births)
    assert found.dtype == "datetime64[ns]"
    assert found.index.tolist() == [10, 11, 12, 13]
    assert found.tolist()[0] == pd.Timestamp("2012-06-30")
    assert found.isna().tolist() == [False, True, True, False]


def test_lookup_in_an_empty_table_finds_nothing():
    found = lookup(pd.Series(["P1"], dtype="str"), pd.Series(dtype="str"))
    assert found.isna().all() and len(found) == 1


def test_lookup_refuses_a_table_with_duplicate_keys():
    with pytest.raises(ValueError, match="duplicate keys"):
        lookup(pd.Series(["P1"], dtype="str"), pd.Series(["a", "b"], index=["P1", "P1"]))


@pytest.mark.parametrize("values", [
    pa.array(["P3", None, "P9", "P3", " P3"]),  # fewer than a third of the set: looked up in it
    pa.chunked_array([["P1", "P2"], [None, "P7", "P8", "P1"], []]),
    pa.array(["P3", None, "P9", "P3"]).dictionary_encode(),
    pa.array(["P3", "P8"], pa.large_string()),
    pa.array([f"P{n}" for n in range(60)] + [None]),  # many: Arrow's plain lookup
    pa.array([], pa.string()),
])
@pytest.mark.parametrize("with_null", [False, True])
def test_in_set_answers_as_arrows_is_in_for_few_values_and_many(values, with_null):
    value_set = pa.array([f"P{n}" for n in range(0, 300, 3)] + ([None] if with_null else []))
    expected = pc.is_in(values, value_set=value_set)
    found = in_set(values, value_set)
    assert type(found) is type(expected)
    assert found.to_pylist() == expected.to_pylist()


def test_per_distinct_computes_once_per_value_and_spreads_the_results():
    seen: list[list[str]] = []

    def shout(values: pd.Series) -> pd.Series:
        seen.append(values.tolist())
        return values.str.upper()

    values = pd.Series(["a", "b", None, "a", "b", "a"], index=list("uvwxyz"), dtype="str")
    result = per_distinct(values, shout)
    assert seen == [["a", "b"]]
    assert result.index.tolist() == list("uvwxyz")
    assert result.tolist()[:2] == ["A", "B"] and result.tolist()[3:] == ["A", "B", "A"]
    assert pd.isna(result["w"])


def test_per_distinct_rejects_a_compute_that_loses_values():
    with pytest.raises(ValueError, match="one result per value"):
        per_distinct(pd.Series(["a", "b"], dtype="str"), lambda values: values.iloc[:1])


def test_arrow_text_reads_numbers_and_driver_objects_as_text():
    assert arrow_text(pd.Series([7, None])).to_pylist() == ["7.0", None]
    assert arrow_text(pd.Series([pd.Timestamp("2020-01-02").date()], dtype=object)
                      ).to_pylist() == ["2020-01-02"]


def test_split_table_drops_rows_not_kept_and_keeps_source_order_in_each_shard():
    frame = pd.DataFrame({"child": [f"P{i % 5}" for i in range(40)], "n": range(40)})
    keep = np.array([i % 7 != 0 for i in range(40)])
    parts = split_table(frame, "child", 3, keep)
    assert len(parts) == 3
    together = pd.concat(parts)
    assert sorted(together["n"]) == [i for i in range(40) if i % 7 != 0]
    for part in parts:
        assert part["n"].is_monotonic_increasing
        assert not set(part["child"]) & set(pd.concat([p for p in parts if p is not part])["child"])
