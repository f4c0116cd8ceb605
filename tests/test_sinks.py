"""Writing and reading a shard's partition of the events and chronology datasets."""

from __future__ import annotations

import pandas as pd
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from flows import sinks


def test_a_partition_is_written_in_child_order_and_read_for_some_children(tmp_path,
                                                                          monkeypatch):
    monkeypatch.setattr(sinks, "PARTITION_ROW_GROUP", 10)
    # Rows in the order a unit stages them: table by table, the children mixed.
    children = [f"C{n:03d}" for n in range(50)]
    frame = pd.DataFrame({"child_id": children[::-1] * 2,
                          "row": range(100)})
    path = sinks.write_partition(frame, tmp_path / "events", 3)

    written = pq.read_table(path).to_pandas()
    assert written["child_id"].is_monotonic_increasing
    # Each child's rows keep their order.
    assert written.groupby("child_id")["row"].apply(list).to_dict() == {
        child: [49 - number, 99 - number] for number, child in enumerate(children)}
    assert pq.ParquetFile(path).metadata.num_row_groups == 10

    some = children[20:25]
    read = sinks.read_partition(tmp_path / "events", 3, children=some)
    assert read["child_id"].tolist() == sorted(some * 2)
    # Only the row group holding them is read, not every row group of the shard.
    fragment = next(ds.dataset(path, format="parquet").get_fragments())
    assert len(fragment.split_by_row_group(sinks.of_children(some))) == 1
    assert sinks.read_partition(tmp_path / "events", 3, children=[]).empty


def test_a_partition_has_dictionaries_but_for_columns_of_a_value_a_row(tmp_path):
    frame = pd.DataFrame({
        "child_id": ["A", "A", "B"], "event_id": ["A-1", "A-2", "B-1"],
        "source_row": [1, 2, 3], "event_type": ["contact", "contact", "referral"],
        "reasons": pd.Series([["a"], [], ["a", "b"]], dtype="object")})
    path = sinks.write_partition(frame, tmp_path / "events", 0)
    group = pq.read_metadata(path).row_group(0)
    chunks = {group.column(i).path_in_schema: group.column(i)
              for i in range(group.num_columns)}
    encoded = {path for path, chunk in chunks.items() if chunk.has_dictionary_page}
    # A list's values are a column of their own, named by its Parquet path.
    assert encoded == {"child_id", "event_type", "reasons.list.element"}
    assert [path for path, chunk in chunks.items() if chunk.is_stats_set] == ["child_id"]
    back = pd.read_parquet(path)
    assert back["event_id"].tolist() == ["A-1", "A-2", "B-1"]
    assert back["reasons"].map(list).tolist() == [["a"], [], ["a", "b"]]
