"""What only the whole source can tell is settled once, and the rows of a run in several
passes are handed out pass by pass, each row once."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from flows.steps import TableOutcome
from flows.verdicts import Verdicts, combined_verdicts
from tests.conftest import raw_frame, raw_tables
from transforms import conform, prepare
from transforms.fingerprint import row_children
from transforms.parts import PART_ROWS, PartWriter, SourceRead
from transforms.prepare import mark_source
from transforms.shards import by_unit, shard_of
from transforms.ssd import TABLES_BY_NAME

PEOPLE = [{"pers_person_id": f"P{i}", "pers_dob": "2010-01-01"} for i in range(40)]
# Contact C0 is held by two children (rows that cannot be told apart), C1 twice by one
# child (an exact copy), C2 twice by one child with different dates.
CONTACTS = [{"cont_contact_id": f"C{i}", "cont_person_id": f"P{i % 40}",
             "cont_contact_date": "2015-01-01"} for i in range(200)] + [
    {"cont_contact_id": "C0", "cont_person_id": "P7", "cont_contact_date": "2015-01-01"},
    {"cont_contact_id": "C1", "cont_person_id": "P1", "cont_contact_date": "2015-01-01"},
    {"cont_contact_id": "C2", "cont_person_id": "P2", "cont_contact_date": "2016-01-01"}]


def _marked(passes, folder=None, part_rows=PART_ROWS, keep=None):
    read = SourceRead.in_memory(raw_tables({"ssd_person": PEOPLE, "ssd_contacts": CONTACTS}),
                                part_rows)
    return mark_source(read, row_children(read, TABLES_BY_NAME), {}, 4, passes, folder,
                       keep=keep)


def test_copies_of_keys_are_counted_over_the_whole_table():
    marked = _marked([(0, 1, 2, 3)])
    got = marked.whole["ssd_contacts"].to_pandas()
    frame = raw_frame("ssd_contacts", CONTACTS).assign(_row=np.arange(len(CONTACTS)))
    expected = conform.mark_exact_copies(TABLES_BY_NAME["ssd_contacts"], frame)
    for column in (conform.KEY_COPIES, conform.REJECTED, "_row"):
        assert got[column].tolist() == expected.frame[column].tolist(), column
    assert got.loc[got["cont_contact_id"].eq("C0"), conform.KEY_COPIES].tolist() == [2, 2]
    assert marked.rejects["rule"].tolist() == ["conform.exact_copy"]  # the copy of C1
    assert marked.births["child_id"].tolist() == [f"P{i}" for i in range(40)]


def test_a_key_held_padded_is_the_same_key():
    # CHAR columns come padded: "C1  " is C1, held by two rows that differ.
    contacts = [{"cont_contact_id": key, "cont_person_id": person,
                 "cont_contact_date": "2015-01-01"}
                for key, person in (("C1", "P1"), ("C1  ", "P2"), ("C2", "P1"),
                                    ("\tC3", "P3"), ("C3\u00a0", "P3"), (" ", "P4"),
                                    ("", "P4"))]
    read = SourceRead.in_memory(raw_tables({"ssd_person": PEOPLE, "ssd_contacts": contacts}))
    marked = mark_source(read, row_children(read, TABLES_BY_NAME), {}, 4, [(0, 1, 2, 3)])
    got = marked.whole["ssd_contacts"].to_pandas()
    # Blank keys are none: not held twice.
    assert got[conform.KEY_COPIES].tolist() == [2, 2, 1, 2, 2, 1, 1]
    assert not got[conform.REJECTED].any()  # they differ: none is a copy of another


def test_keys_of_one_hash_are_told_apart_by_their_values(monkeypatch):
    # Every key hashed alike: each row is checked, and only the keys really held twice
    # count as shared.
    right = _marked([(0, 1, 2, 3)]).whole["ssd_contacts"].to_pandas()
    monkeypatch.setattr(prepare, "column_hashes",
                        lambda values, **_: np.zeros(len(values), dtype="uint64"))
    colliding = _marked([(0, 1, 2, 3)])
    got = colliding.whole["ssd_contacts"].to_pandas()
    for column in (conform.KEY_COPIES, conform.REJECTED, "_row"):
        assert got[column].tolist() == right[column].tolist(), column
    assert colliding.rejects["rule"].tolist() == ["conform.exact_copy"]


@pytest.mark.parametrize("kept", [None, "some", "all"])
def test_tables_held_whole_do_not_point_into_the_read_s_files(tmp_path, kept):
    # The read's files are removed once the rows are marked (on a shared folder, a file
    # still mapped cannot go): what the passes hold must be in memory of its own, whether
    # every row is built (the parts read into memory) or some (copied out of the map).
    notes = [{"casn_case_note_id": f"N{i}", "casn_person_id": f"P{i % 40}",
              "casn_note_text": "text " * 200} for i in range(100)]
    tables = raw_tables({"ssd_person": PEOPLE, "ext_case_notes": notes})
    parts, rows = {}, {}
    for name, table in tables.items():
        writer = PartWriter(tmp_path / name, "part")
        writer.write(table)
        writer.close()
        parts[name], rows[name] = writer.parts, writer.part_rows
    read = SourceRead(parts, rows, tmp_path)
    children = row_children(read, TABLES_BY_NAME)
    keep = None if kept is None else {
        name: np.arange(read.rows(name)) % (2 if kept == "some" else 1) == 0 for name in read}
    before = pa.total_allocated_bytes()
    marked = mark_source(read, children, {}, 4, [(0, 1, 2, 3)], keep=keep)
    held = marked.whole["ext_case_notes"]
    # The notes' text alone is ~100 KB: a table mapped from the file allocates none of it.
    assert pa.total_allocated_bytes() - before >= held["casn_note_text"].nbytes
    read.discard()
    assert held["casn_note_text"].to_pylist() == ["text " * 200] * (50 if kept == "some"
                                                                    else 100)


def test_each_row_of_a_large_table_is_in_the_pass_of_its_childs_shard(tmp_path, monkeypatch):
    monkeypatch.setattr("transforms.prepare.WHOLE_TABLE_ROWS", 100)
    passes = [(0, 2), (1, 3)]
    marked = _marked(passes, tmp_path / "passes")
    assert set(marked.whole) == {"ssd_person"}  # 40 rows: held whole
    seen = []
    for number, shards in enumerate(passes):
        contacts = marked.pass_tables(number).frames["ssd_contacts"]
        assert set(shard_of(contacts["cont_person_id"], 4)) <= set(shards)
        seen += contacts["_row"].tolist()
    assert sorted(seen) == list(range(len(CONTACTS)))  # every row, once
    marked.discard()
    assert not (tmp_path / "passes").exists()


def _frames(marked, passes) -> dict[str, pd.DataFrame]:
    """Each table's marked rows, whole or gathered from the passes, in `_row` order."""
    frames = {name: table.to_pandas() for name, table in marked.whole.items()}
    for number in range(len(passes)):
        for name, frame in marked.pass_tables(number).frames.items():
            frames[name] = pd.concat([frames.get(name), frame])
    return {name: frame.sort_values("_row", ignore_index=True)
            for name, frame in frames.items()}


@pytest.mark.parametrize("part_rows", [1, 7, 64])
def test_a_source_gone_through_in_parts_is_marked_as_when_held_whole(
        tmp_path, monkeypatch, part_rows):
    monkeypatch.setattr("transforms.prepare.WHOLE_TABLE_ROWS", 100)
    passes = [(0, 2), (1, 3)]
    whole = _marked(passes, tmp_path / "whole")
    parts = _marked(passes, tmp_path / "parts", part_rows=part_rows)
    expected, got = _frames(whole, passes), _frames(parts, passes)
    assert set(got) == {"ssd_person", "ssd_contacts"}
    for name in expected:
        pd.testing.assert_frame_equal(got[name], expected[name])
    pd.testing.assert_frame_equal(parts.rejects, whole.rejects)
    pd.testing.assert_frame_equal(parts.births, whole.births)


def test_only_the_rows_kept_are_marked_and_numbered_among_themselves():
    # The children taken from the published output: every third person's rows go.
    read_rows = {"ssd_person": PEOPLE, "ssd_contacts": CONTACTS}
    taken = {f"P{i}" for i in range(0, 40, 3)}
    keep = {name: np.array([row.get("pers_person_id", row.get("cont_person_id")) not in taken
                            for row in rows]) for name, rows in read_rows.items()}
    marked = _marked([(0, 1, 2, 3)], part_rows=5, keep=keep)
    alone = {name: [row for row, kept in zip(rows, keep[name], strict=True) if kept]
             for name, rows in read_rows.items()}
    read = SourceRead.in_memory(raw_tables(alone))
    expected = mark_source(read, row_children(read, TABLES_BY_NAME), {}, 4, [(0, 1, 2, 3)])
    for name in read_rows:
        assert marked.whole[name].equals(expected.whole[name]), name
    assert not set(marked.births["child_id"]) & taken


def test_a_run_in_several_passes_needs_a_folder_for_them():
    with pytest.raises(ValueError, match="needs a folder"):
        _marked([(0, 2), (1, 3)])


def test_rows_of_shards_outside_the_units_are_a_fault_not_a_loss():
    parts = {"ssd_contacts": [pd.DataFrame({"x": [1]}), pd.DataFrame({"x": [2, 3]})]}
    assert len(by_unit(parts, [(0,), (1,)])) == 2
    with pytest.raises(ValueError, match="2 rows of ssd_contacts are of shards outside"):
        by_unit(parts, [(0,)])


def test_a_tables_outcome_over_passes_adds_up_as_one():
    def outcome(unexpected: int, rows: int, found: Verdicts) -> TableOutcome:
        return TableOutcome(
            name="ssd_contacts", rejects=pd.DataFrame(), findings=pd.DataFrame(),
            validation=[{"suite": "ssd_contacts", "rule": "a", "unexpected": unexpected,
                         "success": not unexpected}],
            seconds={"conform": 1.0}, rows={"rows": rows, "judged_before": 1}, found=found)

    first = Verdicts(np.array([10, 11], np.uint64), np.array([1]), np.array([0]))
    second = Verdicts(np.array([12, 13, 14], np.uint64), np.array([0, 2]), np.array([3, 4]))
    empty = TableOutcome(name="ssd_contacts", rejects=pd.DataFrame(),
                         findings=pd.DataFrame(), validation=[], seconds={})
    both = TableOutcome.combined([outcome(0, 2, first), empty, outcome(2, 3, second)])
    assert both.validation == [{"suite": "ssd_contacts", "rule": "a", "unexpected": 2,
                                "success": False}]
    assert both.rows == {"rows": 5, "judged_before": 2}
    assert both.seconds == {"conform": 2.0}
    # Each failure still points at its own row's hash.
    assert both.found.hashes[both.found.failed_rows].tolist() == [11, 12, 14]
    assert both.found.failed_expectations.tolist() == [0, 3, 4]
    assert combined_verdicts([]).hashes.size == 0


def test_an_integer_column_reads_alike_in_every_pass(tmp_path, monkeypatch):
    monkeypatch.setattr("transforms.prepare.WHOLE_TABLE_ROWS", 10)
    # A typed source's INT column (ids held as numbers), with a gap in only some
    # children's rows.
    raw = raw_tables({"ssd_person": PEOPLE, "ssd_permanence": [
        {"perm_table_id": f"M{i}", "perm_person_id": f"P{i}",
         "perm_cla_id": None if i == 3 else str(i % 3)}
        for i in range(40)]})
    raw["ssd_permanence"] = raw["ssd_permanence"].set_column(
        raw["ssd_permanence"].schema.get_field_index("perm_cla_id"),
        "perm_cla_id",
        raw["ssd_permanence"]["perm_cla_id"].cast(pa.int64()))
    passes = [(0, 2), (1, 3)]
    read = SourceRead.in_memory(raw)
    marked = mark_source(read, row_children(read, TABLES_BY_NAME), {}, 4, passes,
                         tmp_path / "passes")
    values = pd.concat([marked.pass_tables(number).frames["ssd_permanence"]
                        for number in range(len(passes))])["perm_cla_id"]
    assert sorted(values.dropna().unique()) == ["0", "1", "2"]  # never "1.0"
    assert values.isna().sum() == 1
