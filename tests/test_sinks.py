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
