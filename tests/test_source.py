"""Extraction from a real SQLite file and the real PostgreSQL server."""

from __future__ import annotations

import os
import sqlite3
import uuid
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest
import sqlalchemy as sa

from fixtures.generator import generate_database
from flows import source as source_module
from flows.source import (
    WHITESPACE,
    SourceSchemaError,
    present_tables,
    read_source,
    read_source_parts,
    select_sql,
    source_url,
)
from tests.conftest import pad_one_child
from transforms.fingerprint import row_children, source_facts, trimmed
from transforms.parts import SourceRead
from transforms.prepare import known_ids
from transforms.ssd import TABLES, TABLES_BY_NAME

POSTGRES_URL = os.environ.get("CHRONOLOGY_TEST_POSTGRES_URL")


@pytest.fixture(scope="module")
def database(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("source") / "ssd.sqlite"
    generate_database(path, children=120, seed=7)
    return path


def _count(path: Path, table: str, where: str = "") -> int:
    with sqlite3.connect(path) as connection:
        return connection.execute(f'SELECT COUNT(*) FROM "{table}" {where}').fetchone()[0]


def test_reads_every_contract_table_and_only_its_columns(database):
    raw = read_source(source_url(database), TABLES)
    assert set(raw) == {t.name for t in TABLES}
    for name, table in raw.items():
        assert table.num_rows == _count(database, name), name
        assert table.column_names == list(TABLES_BY_NAME[name].columns)


def test_a_read_written_to_files_holds_what_a_read_in_memory_holds(database, tmp_path,
                                                                   monkeypatch):
    in_memory = read_source(source_url(database), TABLES)
    for module in ("transforms.parts", "flows.source"):  # several files for larger tables
        monkeypatch.setattr(f"{module}.PART_ROWS", 500)
    read = read_source_parts(source_url(database), TABLES, folder=tmp_path / "read")
    assert any(len(files) > 1 for files in read.parts.values())
    assert all(isinstance(part, Path) for files in read.parts.values() for part in files)
    for name, table in in_memory.items():
        assert read.table(name).equals(table.combine_chunks()), name
        assert read.columns(name, [table.column_names[0], "not_a_column"]).equals(
            table.select([0])), name
    read.discard()
    assert not (tmp_path / "read").exists()


def test_a_read_that_fails_midway_fails_with_its_own_error(database, tmp_path,
                                                          monkeypatch):
    # The error the connection gave, not one of closing the part files: the extract's
    # retries are decided by it.
    reading = source_module._batches
    for batches_first in (0, 1):
        def lost(url, sql, batches_first=batches_first):
            batches = reading(url, sql)
            for _ in range(batches_first):
                yield next(batches)
            raise OSError("connection lost")

        monkeypatch.setattr(source_module, "_batches", lost)
        for folder in (tmp_path / f"read-{batches_first}", None):
            with pytest.raises(OSError, match="connection lost"):
                read_source_parts(source_url(database), TABLES, folder=folder)


def test_a_table_read_in_rowid_ranges_keeps_rows_of_rowid_zero_and_below(tmp_path,
                                                                         monkeypatch):
    path = tmp_path / "rowids.sqlite"
    generate_database(path, children=30, seed=1, examples=False)
    with sqlite3.connect(path) as connection:
        for rowid in (-7, 0):
            connection.execute("INSERT INTO ssd_person (rowid, pers_person_id, pers_dob) "
                               f"VALUES ({rowid}, 'R{rowid}', '2015-01-01')")
        rows = connection.execute("SELECT COUNT(*) FROM ssd_person").fetchone()[0]
    monkeypatch.setattr("flows.source.PART_ROWS", 10)  # several ranges
    person = read_source(source_url(path), TABLES)["ssd_person"]
    assert person.num_rows == rows
    assert {"R-7", "R0"} <= set(person.column("pers_person_id").to_pylist())


def test_sqlite_values_arrive_as_text_whatever_type_sqlite_stored(tmp_path):
    # SQLite keeps a type per value: an id stored as an integer in one row and as text in
    # another must not break the Arrow reader.
    path = tmp_path / "mixed.sqlite"
    generate_database(path, children=30, seed=1, examples=False)
    with sqlite3.connect(path) as connection:
        connection.execute("INSERT INTO ssd_person (pers_person_id, pers_dob) VALUES (42, "
                           "'2015-01-01')")
    person = read_source(source_url(path), TABLES)["ssd_person"]
    id_type = person.schema.field("pers_person_id").type
    assert pa.types.is_string(id_type) or pa.types.is_large_string(id_type)
    assert "42" in person.column("pers_person_id").to_pylist()


def test_text_columns_read_uncast_give_what_a_cast_gives(tmp_path):
    # Columns declared as text are read as SQLite stored them (no CAST): a blob among
    # the first rows, an integer, or a number in a date column still arrive as the text
    # CAST would make of them, and bytes that are not text are a clear error.
    path = tmp_path / "typed.sqlite"
    generate_database(path, children=30, seed=1, examples=False)
    with sqlite3.connect(path) as connection:
        connection.execute("DELETE FROM ssd_contacts")
        connection.executemany(
            "INSERT INTO ssd_contacts (cont_contact_id, cont_person_id, cont_contact_date, "
            "cont_contact_source_desc) VALUES (?, ?, ?, ?)",
            [(b"K1", "EX0000001", "2024-01-02", "Police"),
             ("K2", "EX0000001", 2024.5, b"School"),
             ("K3", 42, 20240101, None)])
    contacts = read_source(source_url(path), TABLES)["ssd_contacts"].to_pydict()
    assert contacts["cont_contact_id"] == ["K1", "K2", "K3"]
    assert contacts["cont_person_id"] == ["EX0000001", "EX0000001", "42"]
    assert contacts["cont_contact_date"] == ["2024-01-02", "2024.5", "20240101"]
    assert contacts["cont_contact_source_desc"] == ["Police", "School", None]
    with sqlite3.connect(path) as connection:
        connection.execute("UPDATE ssd_contacts SET cont_contact_source_desc = ? "
                           "WHERE cont_contact_id = 'K3'", (b"\xff\xfe",))
    with pytest.raises(SourceSchemaError, match="not UTF-8"):
        read_source(source_url(path), TABLES)


def test_reads_only_the_children_asked_for(database):
    children = ["EX0000002", "EX0000003"]
    raw = read_source(source_url(database), TABLES, children)
    assert sorted(raw["ssd_person"].column("pers_person_id").to_pylist()) == children
    for name, table in raw.items():
        contract = TABLES_BY_NAME[name]
        if contract.person is not None:
            assert set(table.column(contract.person).to_pylist()) <= set(children), name
    # Tables without a person column come through their owner: factors of these
    # children's assessments only.
    factors = raw["ssd_assessment_factors"].column("cinf_assessment_id").to_pylist()
    assessments = raw["ssd_cin_assessments"].column("cina_assessment_id").to_pylist()
    assert set(factors) <= set(assessments)


def _keys_of(raw: dict[str, pa.Table], child: str) -> dict[str, list[str]]:
    """The keys of the rows a full run gives `child`, by table (as its build finds
    each row's child: ids and keys trimmed)."""
    of_rows = row_children(SourceRead.in_memory(raw), TABLES_BY_NAME)
    found = {}
    for name, table in raw.items():
        mine = pa.array([value == child for value in
                         of_rows[name].dictionary_decode().to_pylist()], pa.bool_())
        found[name] = sorted(trimmed(table.filter(mine)[TABLES_BY_NAME[name].key])
                             .to_pylist())
    return found


def test_a_read_of_some_children_takes_their_rows_with_padded_ids_and_keys(database,
                                                                           tmp_path):
    path = tmp_path / "padded.sqlite"
    path.write_bytes(database.read_bytes())
    child, _ = pad_one_child(path)
    whole = _keys_of(read_source(source_url(path), TABLES), child)
    assert whole["ssd_assessment_factors"] and whole["ssd_contacts"]
    assert _keys_of(read_source(source_url(path), TABLES, [child]), child) == whole


def test_the_whitespace_trimmed_in_sql_is_what_python_and_arrow_trim():
    every = [chr(point) for point in range(0x110000) if not 0xD800 <= point < 0xE000]
    assert sorted(WHITESPACE) == [c for c in every if c.isspace()]
    trimmed_away = pa.compute.utf8_trim_whitespace(pa.array([f"x{c}" for c in every]))
    assert sorted(WHITESPACE) == [c for c, t in zip(every, trimmed_away.to_pylist(),
                                                    strict=True) if t == "x"]


def test_reading_some_children_refuses_an_owner_key_another_child_shares(tmp_path):
    # A full run rejects factors under an assessment key two children hold; a read of one
    # of them would see only its own assessment and give that child the other's factors.
    path = tmp_path / "shared.sqlite"
    generate_database(path, children=30, seed=3, bad_rate=0)
    with sqlite3.connect(path) as connection:
        ((one, assessment),) = connection.execute(
            "SELECT cina_person_id, cina_assessment_id FROM ssd_cin_assessments WHERE "
            "cina_assessment_id IN (SELECT cinf_assessment_id FROM ssd_assessment_factors) "
            "LIMIT 1").fetchall()
        other = connection.execute("SELECT pers_person_id FROM ssd_person WHERE "
                                   "pers_person_id != ? LIMIT 1", (one,)).fetchone()[0]
        connection.execute("INSERT INTO ssd_cin_assessments (cina_assessment_id, "
                           "cina_person_id) VALUES (?, ?)", (assessment, other))
    with pytest.raises(SourceSchemaError, match="1 ssd_cin_assessments key.* also held by "
                       "rows of other children.*rebuild every child"):
        read_source(source_url(path), TABLES, [one])
    # Both children together are read, as the full run reads them.
    raw = read_source(source_url(path), TABLES, [one, other])
    assert raw["ssd_cin_assessments"].num_rows >= 2


@pytest.mark.parametrize("padding", ["", "  "])
def test_reading_some_children_refuses_a_record_key_another_child_shares(tmp_path, padding):
    # A full run rejects both rows of a duplicated key; a read of one child would keep
    # its row. The build trims keys: "K1  " is K1.
    path = tmp_path / "duplicate.sqlite"
    generate_database(path, children=30, seed=4, bad_rate=0)
    with sqlite3.connect(path) as connection:
        ((one, contact),) = connection.execute(
            "SELECT cont_person_id, cont_contact_id FROM ssd_contacts LIMIT 1").fetchall()
        other = connection.execute("SELECT pers_person_id FROM ssd_person WHERE "
                                   "pers_person_id != ? LIMIT 1", (one,)).fetchone()[0]
        connection.execute("INSERT INTO ssd_contacts (cont_contact_id, cont_person_id) "
                           "VALUES (?, ?)", (contact + padding, other))
    with pytest.raises(SourceSchemaError, match="1 ssd_contacts key.* also held by"):
        read_source(source_url(path), TABLES, [one])
    # A child without shared keys is read as before.
    assert read_source(source_url(path), TABLES, [other, one])["ssd_person"].num_rows == 2


def test_child_ids_are_quoted_not_executed():
    sql = select_sql(TABLES_BY_NAME["ssd_contacts"], "sqlite", ["x' OR '1'='1"])
    assert "'x'' OR ''1''=''1'" in sql


def test_a_missing_table_is_a_clear_error_naming_it(database, tmp_path):
    broken = tmp_path / "broken.sqlite"
    broken.write_bytes(database.read_bytes())
    with sqlite3.connect(broken) as connection:
        connection.execute("DROP TABLE ssd_cp_plans")
    with pytest.raises(SourceSchemaError, match="table ssd_cp_plans is missing"):
        read_source(source_url(broken), TABLES)


def test_a_missing_column_is_a_clear_error_naming_it(database, tmp_path):
    broken = tmp_path / "broken.sqlite"
    broken.write_bytes(database.read_bytes())
    with sqlite3.connect(broken) as connection:
        connection.execute("ALTER TABLE ssd_contacts DROP COLUMN cont_contact_date")
    with pytest.raises(SourceSchemaError, match=r"column ssd_contacts\.cont_contact_date"):
        read_source(source_url(broken), TABLES)


def test_the_case_note_extension_may_be_absent(tmp_path):
    path = tmp_path / "plain.sqlite"
    generate_database(path, children=10, seed=3, case_notes=False)
    found = {t.name for t in present_tables(source_url(path), TABLES)}
    assert "ext_case_notes" not in found
    assert "ssd_person" in found


def test_a_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(SourceSchemaError, match="does not exist"):
        source_url(tmp_path / "nowhere.sqlite")


def _typed_for_postgres(table: pa.Table, name: str) -> pa.Table:
    """The SQLite text as a real PostgreSQL extract holds it: dates as TIMESTAMP."""
    frame = table.to_pandas()
    for column in TABLES_BY_NAME[name].dates:
        frame[column] = pd.to_datetime(frame[column], format="ISO8601", errors="coerce")
    return pa.Table.from_pandas(frame, preserve_index=False)


@pytest.fixture(scope="module")
def postgres(database):
    if not POSTGRES_URL:
        pytest.skip("CHRONOLOGY_TEST_POSTGRES_URL is not set (.ci/run sets it)")
    import adbc_driver_postgresql.dbapi as driver

    schema = f"chronology_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(sa.make_url(POSTGRES_URL).set(drivername="postgresql+psycopg"))
    with admin.begin() as connection:
        connection.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    raw = read_source(source_url(database), TABLES)
    libpq = sa.make_url(POSTGRES_URL).set(drivername="postgresql").render_as_string(False)
    with driver.connect(libpq) as connection, connection.cursor() as cursor:
        for name, table in raw.items():
            cursor.adbc_ingest(name, _typed_for_postgres(table, name), mode="create",
                               db_schema_name=schema)
        connection.commit()
    url = sa.make_url(POSTGRES_URL).update_query_dict({"options": f"-csearch_path={schema}"})
    yield url.render_as_string(hide_password=False), raw
    with admin.begin() as connection:
        connection.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


@pytest.mark.postgres
def test_postgres_reads_the_same_rows_with_real_date_types(postgres):
    url, from_sqlite = postgres
    from_postgres = read_source(source_url(url), TABLES)
    assert set(from_postgres) == set(from_sqlite)
    for name, table in from_postgres.items():
        assert table.num_rows == from_sqlite[name].num_rows, name
    dob = from_postgres["ssd_person"].schema.field("pers_dob").type
    assert pa.types.is_timestamp(dob)


@pytest.mark.postgres
def test_postgres_typed_columns_fingerprint_like_sqlite_text(postgres):
    """Dates and timestamps arrive typed from PostgreSQL: every child is fingerprinted,
    and a record dated after the as-of date is found as from SQLite's text."""
    url, from_sqlite = postgres
    from_postgres = read_source(source_url(url), TABLES)
    as_of = pd.Timestamp("2020-01-01")  # most records are later
    facts = {name: source_facts(read, TABLES_BY_NAME, known_ids(read), as_of, None).children
             for name, read in (("postgres", SourceRead.in_memory(from_postgres)),
                                ("sqlite", SourceRead.in_memory(from_sqlite)))}
    assert facts["postgres"].index.sort_values().equals(facts["sqlite"].index.sort_values())
    assert facts["postgres"]["fingerprint"].is_unique
    pd.testing.assert_series_equal(facts["postgres"]["next_record"].sort_index(),
                                   facts["sqlite"]["next_record"].sort_index())


@pytest.mark.postgres
def test_postgres_reads_some_children_with_padded_ids_and_keys(postgres, tmp_path):
    url, _ = postgres
    path = tmp_path / "padded.sqlite"
    generate_database(path, children=30, seed=3, bad_rate=0)
    child, _ = pad_one_child(path)
    padded = read_source(source_url(path), TABLES)
    schema = f"chronology_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(sa.make_url(POSTGRES_URL).set(drivername="postgresql+psycopg"))
    import adbc_driver_postgresql.dbapi as driver

    libpq = sa.make_url(POSTGRES_URL).set(drivername="postgresql").render_as_string(False)
    with admin.begin() as connection:
        connection.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    try:
        with driver.connect(libpq) as connection, connection.cursor() as cursor:
            for name, table in padded.items():
                cursor.adbc_ingest(name, _typed_for_postgres(table, name), mode="create",
                                   db_schema_name=schema)
            connection.commit()
        there = sa.make_url(POSTGRES_URL).update_query_dict(
            {"options": f"-csearch_path={schema}"}).render_as_string(hide_password=False)
        whole = _keys_of(padded, child)
        assert whole["ssd_assessment_factors"] and whole["ssd_contacts"]
        assert _keys_of(read_source(source_url(there), TABLES, [child]), child) == whole
    finally:
        with admin.begin() as connection:
            connection.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.mark.postgres
def test_postgres_children_subset(postgres):
    url, _ = postgres
    raw = read_source(source_url(url), TABLES, ["EX0000002"])
    assert raw["ssd_person"].column("pers_person_id").to_pylist() == ["EX0000002"]
