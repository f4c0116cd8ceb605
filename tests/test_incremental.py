"""Incremental runs: a run over the whole source takes the children whose records did not
change from the published output, and what it publishes equals a full build."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pytest
from click.testing import CliRunner

from fixtures.generator import generate_database
from flows import sinks
from flows.build import RunFailed, build_chronologies
from flows.cli import main
from flows.incremental import requested_children, rows_to_build
from transforms.fingerprint import UNNAMED

AS_OF = "2026-03-31"
LATER = "2026-05-15"  # past some birthdays and history cut-offs; plans still open
# Columns that say which run made a row, for which as-of date, or where it sat in that
# run's read, not what the row says: they differ between an incremental and a full build
# by design.
RUN_COLUMNS = {"first_seen_run", "source_row", "new_entries", "built_as_of"}


@pytest.fixture(autouse=True)
def prefect(prefect_harness):
    yield


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("incremental") / "ssd.sqlite"
    generate_database(path, children=150, seed=23, bad_rate=0.01)
    return path


@pytest.fixture(scope="module")
def first(source, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("out")
    return out, build_chronologies(source=str(source), out=str(out), shards=3, as_of=AS_OF)


def _published(out: Path) -> dict[str, pd.DataFrame]:
    """Every table and dataset of the published output, rows in a stable order."""
    current = out / sinks.CURRENT
    found = {name: pd.read_parquet(current / name) for name in sinks.ROW_ORDER}
    for dataset in ("events", "chronology"):
        found[dataset] = ds.dataset(current / dataset, partitioning="hive").to_table(
        ).to_pandas()
        found[dataset] = found[dataset].assign(shard=found[dataset]["shard"].astype("int64"))
    keys = {**sinks.ROW_ORDER, "rejects.parquet": ["table", "record_id", "expectation"],
            "events": ["child_id", "event_id"], "chronology": ["child_id", "seq"]}
    return {name: frame.drop(columns=[c for c in RUN_COLUMNS if c in frame.columns])
            .sort_values(keys[name], ignore_index=True) for name, frame in found.items()}


def _assert_same_outputs(incremental: Path, full: Path) -> None:
    built, fresh = _published(incremental), _published(full)
    for name in fresh:
        pd.testing.assert_frame_equal(built[name], fresh[name], check_like=True,
                                      obj=name)


def _pages(out: Path) -> dict[str, int]:
    return {p.name: p.stat().st_ino
            for p in (out / sinks.CURRENT / "site" / "children").glob("*.html")}


def test_a_rerun_with_nothing_changed_reuses_every_child(first, source):
    out, manifest = first
    before, tables = _pages(out), _published(out)
    again = build_chronologies(source=str(source), out=str(out), shards=3,
                               as_of=AS_OF)
    assert again["published"]
    assert again["carried_over"]["children"] == manifest["children"]
    assert again["children"] == 0
    assert again["rebuilt_because"] == {}
    assert again["rows_in"] == 0 and again["rows_read"] > 0
    # With no child to build, nothing was prepared, checked or shaped.
    assert not {"prepare", "validate_source", "stage_score_shape"} & set(
        again["timings_seconds"])
    after = _pages(out)
    assert after == before  # the same files: nothing was rendered again
    for name, frame in _published(out).items():
        pd.testing.assert_frame_equal(frame, tables[name], obj=name)


def test_a_rerun_that_builds_nothing_keeps_every_partition_readable(tmp_path):
    # Two children in eight shards: most partitions hold no rows, and a run that builds
    # no child must still leave each with its columns.
    source = tmp_path / "ssd.sqlite"
    generate_database(source, children=2, seed=5)
    out = tmp_path / "out"
    build_chronologies(source=str(source), out=str(out), shards=8, as_of=AS_OF)
    tables = _published(out)
    again = build_chronologies(source=str(source), out=str(out), shards=8, as_of=AS_OF)
    assert again["published"] and again["children"] == 0
    for dataset in ("events", "chronology"):
        for number in range(8):
            partition = out / sinks.CURRENT / dataset / f"shard={number}"
            assert "child_id" in pd.read_parquet(partition).columns, partition
    for name, frame in _published(out).items():
        pd.testing.assert_frame_equal(frame, tables[name], obj=name)


def test_changed_records_rebuild_just_their_children_and_match_a_full_build(
        first, source, tmp_path):
    out, manifest = first
    changed_source = tmp_path / "ssd.sqlite"
    shutil.copy(source, changed_source)
    children = pd.read_parquet(out / sinks.CURRENT / "children.parquet")
    noted = children[children["raw_rows"] > 5]["child_id"].tolist()
    edited, gone = noted[0], noted[1]
    with sqlite3.connect(changed_source) as db:
        note = db.execute("select casn_case_note_id from ext_case_notes where "
                          "casn_person_id = ? limit 1", (edited,)).fetchone()[0]
        db.execute("update ext_case_notes set casn_note_text = 'Visit rearranged' "
                   "where casn_case_note_id = ?", (note,))
        for (table,) in db.execute("select name from sqlite_master where type = 'table'"
                                   ).fetchall():
            person = [c[1] for c in db.execute(f"pragma table_info({table})")
                      if c[1].endswith("_person_id") and not c[1].startswith("moth_childs")]
            for column in person:
                db.execute(f"delete from {table} where {column} = ?", (gone,))
    before = _pages(out)
    again = build_chronologies(source=str(changed_source), out=str(out), shards=3,
                               as_of=AS_OF)
    assert again["published"]
    # The edited child; and the rows that name no child, when the child who left had
    # assessment factors or reviews, which their parents' going leaves orphaned.
    assert again["rebuilt_because"].get("records changed") in (1, 2)
    assert again["children"] == 1
    after = _pages(out)
    page = children.set_index("child_id")["page_id"]
    assert f"{page[gone]}.html" not in after
    assert after[f"{page[edited]}.html"] != before[f"{page[edited]}.html"]
    untouched = set(before) - {f"{page[edited]}.html", f"{page[gone]}.html"}
    assert {name: after[name] for name in untouched} == {name: before[name]
                                                        for name in untouched}
    fresh = tmp_path / "full"
    build_chronologies(source=str(changed_source), out=str(fresh), shards=3, as_of=AS_OF)
    _assert_same_outputs(out, fresh)

    # A year on, with the records unchanged: what time changes is rebuilt, the rest is
    # reused, and the output is still what a full build makes.
    later = build_chronologies(source=str(changed_source), out=str(out), shards=3,
                               as_of=LATER)
    assert later["carried_over"]["children"] > 0
    assert later["rebuilt_because"]["as-of date out of range"] > 0
    fresh_later = tmp_path / "full-later"
    build_chronologies(source=str(changed_source), out=str(fresh_later), shards=3,
                       as_of=LATER)
    _assert_same_outputs(out, fresh_later)


def test_full_and_since_rebuild_children_that_did_not_change(first, source):
    out, manifest = first
    full = build_chronologies(source=str(source), out=str(out), shards=3,
                              as_of=AS_OF, full=True)
    assert full["carried_over"] is None
    assert full["children"] == manifest["children"]
    since = build_chronologies(source=str(source), out=str(out), shards=3,
                               as_of=AS_OF, since="2026-03-01")
    asked = since["rebuilt_because"]["asked for by --since"]
    assert 0 < asked < manifest["children"]
    assert since["children"] >= asked
    assert since["carried_over"]["children"] + since["children"] == manifest["children"]


def test_other_rules_rebuild_everyone(first, source, tmp_path):
    out, _ = first
    rules = tmp_path / "rules.yml"
    shipped = (Path(__file__).parent.parent / "transforms" / "rules.yml").read_text()
    rules.write_text(shipped.replace("history_years: 2", "history_years: 3"), encoding="utf-8")
    again = build_chronologies(source=str(source), out=str(out), shards=3,
                               as_of=AS_OF, rules=str(rules))
    assert again["carried_over"] is None
    assert set(again["rebuilt_because"]) == {"other rules"}
    stored = json.loads((out / sinks.CURRENT / "manifest.json").read_text())
    assert stored["rules"]["hash"] == again["rules"]["hash"]


def test_children_carried_from_other_code_are_rebuilt_by_the_next_whole_run(
        source, tmp_path, monkeypatch):
    # After an upgrade, a run for some children builds them with the new code and carries
    # every other child as the old code built them: the next run over the whole source
    # must not take those for the new code's work.
    import flows.build

    out = tmp_path / "out"
    upgraded = flows.build.code_digest()
    monkeypatch.setattr(flows.build, "code_digest", lambda: "before the upgrade")
    build_chronologies(source=str(source), out=str(out), shards=3, as_of=AS_OF)
    monkeypatch.setattr(flows.build, "code_digest", lambda: upgraded)
    child = pd.read_parquet(out / sinks.CURRENT / "children.parquet")["child_id"].iloc[0]
    some = build_chronologies(source=str(source), out=str(out), shards=3, as_of=AS_OF,
                              children=[str(child)])
    assert some["carried_over"]["children"] > 0
    assert some["code"] != upgraded
    whole = build_chronologies(source=str(source), out=str(out), shards=3, as_of=AS_OF)
    assert whole["carried_over"] is None
    assert set(whole["rebuilt_because"]) == {"other chronology code"}
    assert whole["code"] == upgraded


def test_an_output_from_before_fingerprints_is_rebuilt_not_patched(source, tmp_path):
    out = tmp_path / "out"
    build_chronologies(source=str(source), out=str(out), shards=3, as_of=AS_OF)
    (out / sinks.CURRENT / "fingerprints.parquet").unlink()
    child = pd.read_parquet(out / sinks.CURRENT / "children.parquet")["child_id"].iloc[0]
    with pytest.raises(RunFailed, match="older chronology"):
        build_chronologies(source=str(source), out=str(out), shards=3, as_of=AS_OF,
                           children=[child])
    again = build_chronologies(source=str(source), out=str(out), shards=3, as_of=AS_OF)
    assert set(again["rebuilt_because"]) == {"published output has no fingerprints"}
    assert again["published"] and again["carried_over"] is None


def test_children_asked_for_are_trimmed_once_each_and_blank_is_refused(tmp_path):
    assert requested_children(None) is None
    assert requested_children([" P1", "P2\t", "P1", "", "\u00a0P3\u3000"]) == \
        ["P1", "P2", "P3"]
    with pytest.raises(ValueError, match="give at least one child id"):
        requested_children([" ", ""])
    # The command line and the deployment's parameter say the same.
    result = CliRunner().invoke(main, ["build", "--source", str(tmp_path / "none.sqlite"),
                                       "--out", str(tmp_path / "out"), "--children", " , "])
    assert result.exit_code == 1
    assert "Invalid value for --children: give at least one child id" in result.output
    with pytest.raises(ValueError, match="give at least one child id"):
        build_chronologies(source=str(tmp_path / "none.sqlite"), out=str(tmp_path / "out"),
                           children=["  "])
    assert not (tmp_path / "out").exists()


def test_rows_to_build_are_those_of_children_not_reused_in_every_table():
    # Each table's children are looked up together: a row must still get its own child's
    # answer, whatever the order and overlap of the tables' children.
    children = {"ssd_person": pc.dictionary_encode(pa.array(["A", "B", "C", "A"])),
                "ssd_contacts": pc.dictionary_encode(pa.array([UNNAMED, "C", "D", "C"])),
                "ssd_address": pc.dictionary_encode(pa.array([], pa.string()))}
    built = rows_to_build(children, frozenset({"A", "C", UNNAMED}))
    assert {name: rows.tolist() for name, rows in built.items()} == {
        "ssd_person": [False, True, False, False],
        "ssd_contacts": [False, False, True, False], "ssd_address": []}
    assert all(rows.dtype == np.bool_ for rows in built.values())
    assert rows_to_build(children, frozenset()) is None


@pytest.mark.parametrize("options", [["--no-such-option"], ["--shards", "0"],
                                     ["--as-of", "yesterday"], ["--runner", "spark"]])
def test_usage_errors_are_bad_input_exit_code_1_not_a_fault(options, tmp_path):
    result = CliRunner().invoke(main, ["build", "--source", str(tmp_path / "none.sqlite"),
                                       "--out", str(tmp_path / "out"), *options])
    assert result.exit_code == 1, result.output
    assert "Error" in result.output or "error" in result.output
    assert not (tmp_path / "out").exists()


def test_a_run_for_some_children_refuses_full_and_since(source, tmp_path):
    for choice in ({"full": True}, {"since": "2026-01-01"}):
        with pytest.raises(ValueError, match="leave out full and since"):
            build_chronologies(source=str(source), out=str(tmp_path), children=["C1"],
                               **choice)
    assert not any(tmp_path.iterdir())  # refused before touching the output


def test_a_record_that_moved_between_children_rebuilds_both_or_stops_a_partial_run(
        source, tmp_path):
    # A contact moved from one child to another (two person records merged, say). A run
    # for the new child alone would leave the contact on the old child's published page
    # too, so it stops and names that child; a run over the whole source sees both
    # children's records change and rebuilds both.
    moved_source = tmp_path / "ssd.sqlite"
    shutil.copy(source, moved_source)
    out = tmp_path / "out"
    build_chronologies(source=str(moved_source), out=str(out), shards=3, as_of=AS_OF)
    events = ds.dataset(out / sinks.CURRENT / "events", partitioning="hive").to_table(
        columns=["child_id", "source_table", "source_id", "event_date"]).to_pandas()
    # The latest contact, moved to a child born before it (so that it stays valid).
    latest = events[events["source_table"] == "ssd_contacts"].sort_values("event_date").iloc[-1]
    old_child, contact = latest["child_id"], latest["source_id"]
    children = pd.read_parquet(out / sinks.CURRENT / "children.parquet")
    new_child = children[(children["child_id"] != old_child)
                         & (children["birth_date"] < latest["event_date"])]["child_id"].iloc[0]
    with sqlite3.connect(moved_source) as db:
        db.execute("update ssd_contacts set cont_person_id = ? where cont_contact_id = ?",
                   (new_child, contact))
    with pytest.raises(RunFailed, match=f"published pages of 1 other child.*{old_child}"):
        build_chronologies(source=str(moved_source), out=str(out), shards=3, as_of=AS_OF,
                           children=[new_child])
    whole = build_chronologies(source=str(moved_source), out=str(out), shards=3, as_of=AS_OF)
    assert whole["published"] and whole["rebuilt_because"]["records changed"] == 2
    events = ds.dataset(out / sinks.CURRENT / "events", partitioning="hive").to_table(
        columns=["child_id", "source_table", "source_id"]).to_pandas()
    holders = events[(events["source_table"] == "ssd_contacts")
                     & (events["source_id"] == contact)]["child_id"]
    assert set(holders) == {new_child}
