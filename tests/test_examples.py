"""The hand-written example children: they load, are clean, and reach the database."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from fixtures.examples import load_examples, write_examples
from fixtures.generator import generate_database, schema_statements
from transforms.ssd import CASE_NOTES_TABLE, PERSON_TABLE, TABLES_BY_NAME


def test_four_examples_with_stories() -> None:
    examples = load_examples()
    assert [e.id for e in examples] == ["EX0000001", "EX0000002", "EX0000003", "EX0000004"]
    for example in examples:
        assert len(example.story.split()) > 40, example.id  # a paragraph, not a label
        assert example.records[PERSON_TABLE][0]["pers_person_id"] == example.id


def test_every_id_starts_with_ex() -> None:
    # Generated ids start with other prefixes (P, REF, CPV...), so examples never collide.
    for example in load_examples():
        for table, rows in example.records.items():
            spec = TABLES_BY_NAME[table]
            for row in rows:
                assert row[spec.key].startswith("EX"), (table, row[spec.key])
                if spec.person:
                    assert row[spec.person] == example.id


def test_json_fields_are_valid_and_complete() -> None:
    # Outcome dicts carry every SSD key, as the spec guidance asks.
    for example in load_examples():
        for table, rows in example.records.items():
            for column in TABLES_BY_NAME[table].json:
                for row in rows:
                    if row.get(column) is not None:
                        value = json.loads(row[column])
                        if column == "cont_contact_outcome_json":
                            assert len(value) == 10 and value["NFA_FLAG"] in ("Y", "N")


def test_only_the_markup_note_carries_markup() -> None:
    # Examples are clean apart from one case note that tests escaping on the page.
    marked = [row["casn_note_text"] for e in load_examples()
              for row in e.records.get(CASE_NOTES_TABLE, []) if "<" in row["casn_note_text"]]
    assert marked == [m for m in marked if "<img src=x onerror=alert(1)>" in m]
    assert len(marked) == 1


@pytest.mark.parametrize("case_notes", [True, False])
def test_written_into_an_empty_database(tmp_path: Path, case_notes: bool) -> None:
    path = tmp_path / "examples.sqlite"
    with sqlite3.connect(path) as conn:
        for statement in schema_statements(case_notes):
            conn.execute(statement)
    counts = write_examples(path, case_notes=case_notes)
    assert counts[PERSON_TABLE] == 4
    assert (CASE_NOTES_TABLE in counts) is case_notes
    with sqlite3.connect(path) as conn:
        for table, count in counts.items():
            assert conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] == count


def test_examples_appear_in_a_generated_database(tmp_path: Path) -> None:
    path = tmp_path / "demo.sqlite"
    report = generate_database(path, children=30)
    with sqlite3.connect(path) as conn:
        ids = {r[0] for r in conn.execute("SELECT pers_person_id FROM ssd_person")}
        placements = conn.execute(
            "SELECT clap_cla_placement_type FROM ssd_cla_placement "
            "WHERE clap_person_id = 'EX0000003' ORDER BY clap_cla_placement_start_date"
        ).fetchall()
    assert {"EX0000001", "EX0000002", "EX0000003", "EX0000004"} <= ids
    assert placements == [("U6",), ("K2",), ("H5",)]
    assert not report.injected.record_id.str.startswith("EX").any()
