from __future__ import annotations

import os
import re
import sqlite3
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from transforms import conform
from transforms.fingerprint import row_children
from transforms.parts import SourceRead
from transforms.prepare import known_ids, mark_source
from transforms.ssd import TABLES_BY_NAME
from transforms.stage import EVENT_COLUMNS, _typed

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--update-golden", action="store_true",
                     help="Rewrite the golden files from the pipeline's output (then review "
                     "the diff line by line before committing it).")


@pytest.fixture(scope="session")
def prefect_harness():
    """One Prefect test server for every test that runs the flow (~11 s to start)."""
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        with prefect_test_harness(server_startup_timeout=90):
            yield


@pytest.fixture(scope="session")
def examples_output(prefect_harness, tmp_path_factory) -> Path:
    """The version folder of one run of the flow over the hand-written example children,
    as of 2026-03-31: their chronology, tables and pages."""
    from fixtures.examples import write_examples
    from fixtures.generator import schema_statements
    from flows.build import build_chronologies

    folder = tmp_path_factory.mktemp("examples")
    path = folder / "examples.sqlite"
    with sqlite3.connect(path) as conn:
        for statement in schema_statements(True):
            conn.execute(statement)
    write_examples(path)
    manifest = build_chronologies(source=str(path), out=str(folder / "out"), shards=2,
                                  as_of="2026-03-31")
    assert manifest["status"] == "succeeded" and manifest["rows_rejected"] == 0
    return Path(manifest["version"])


def raw_frame(table: str, rows: list[dict]) -> pd.DataFrame:
    """A source table as an extract gives it: every contract column, text values."""
    columns = TABLES_BY_NAME[table].columns
    frame = pd.DataFrame([{c: row.get(c) for c in columns} for row in rows], columns=columns)
    return frame.astype("str")


def raw_tables(tables: dict[str, list[dict]]) -> dict[str, pa.Table]:
    """Literal rows as the source reader gives them: Arrow tables of text."""
    return {name: pa.Table.from_pandas(frame, preserve_index=False, schema=pa.schema(
        [(column, pa.string()) for column in frame.columns]))
        for name, frame in ((name, raw_frame(name, rows)) for name, rows in tables.items())}


def conformed(tables: dict[str, list[dict]]) -> dict[str, pd.DataFrame]:
    """Literal rows taken through the run's numbering and owner resolution, and
    conforming."""
    read = SourceRead.in_memory(raw_tables(tables))
    marked = mark_source(read, row_children(read, TABLES_BY_NAME), known_ids(read), shards=1,
                         passes=[(0,)])
    return {name: conform.conform_table(TABLES_BY_NAME[name], table.to_pandas(
        date_as_object=False).drop(columns=[conform.KEY_COPIES, conform.REJECTED])).frame
        for name, table in marked.whole.items()}


def literal_events(*rows: dict, birth: str = "2012-01-01") -> pd.DataFrame:
    """Canonical events from literal rows: child C1 (unless a row says otherwise), born
    `birth`; each row's id, source and position filled in from its place in the list
    unless it gives its own."""
    born = pd.Timestamp(birth)
    filled = []
    positions: dict[tuple[str, str], int] = {}  # one source row per record, as staging has
    for number, row in enumerate(rows):
        when = pd.Timestamp(row["event_date"])
        table = row.get("source_table", "t")
        record = row.get("source_id", str(number))
        position = positions.setdefault((table, record), len(positions))
        filled.append({"child_id": "C1", "event_id": f"{table}:{record}:{number}",
                       "source_table": table, "source_id": record, "source_row": position,
                       "date_precision": "day", "age_days": (when.normalize() - born).days,
                       **row})
    return _typed(pd.DataFrame(filled), EVENT_COLUMNS)


# Columns that hold the run's own id: equal to each run's id, not to each other.
RUN_ID_COLUMNS = {"first_seen_run"}


def pad_one_child(path: Path) -> tuple[str, str]:
    """Pad the ids and keys of one child (its person row, an assessment which has
    factors, its contacts) with whitespace, as CHAR columns and careless extracts give
    them; return the child and the assessment, unpadded."""
    with sqlite3.connect(path) as connection:
        ((child, assessment),) = connection.execute(
            "SELECT cina_person_id, cina_assessment_id FROM ssd_cin_assessments WHERE "
            "cina_assessment_id IN (SELECT cinf_assessment_id FROM ssd_assessment_factors) "
            "LIMIT 1").fetchall()
        connection.execute("UPDATE ssd_cin_assessments SET cina_person_id = ?, "
                           "cina_assessment_id = ? WHERE cina_assessment_id = ?",
                           (f" {child}   ", f"{assessment}\u00a0", assessment))
        connection.execute("UPDATE ssd_assessment_factors SET cinf_assessment_id = ? "
                           "WHERE cinf_assessment_id = ?", (f"\t{assessment}", assessment))
        connection.execute("UPDATE ssd_contacts SET cont_person_id = ? WHERE "
                           "cont_person_id = ?", (f"{child}\u3000\n", child))
        connection.execute("UPDATE ssd_person SET pers_person_id = ? WHERE "
                           "pers_person_id = ?", (f"{child} ", child))
    return child, assessment


def version_tables(version: Path) -> dict[str, pa.Table]:
    """Every Parquet table of a version, each partition of the datasets on its own."""
    found = {path.name: pq.read_table(path) for path in sorted(version.glob("*.parquet"))}
    for dataset in ("chronology", "events"):
        for partition in sorted((version / dataset).glob("shard=*")):
            found[f"{dataset}/{partition.name}"] = pq.read_table(partition)
    return found


def assert_same_outputs(expected: dict, got: dict) -> None:
    """The versions two runs (their manifests) wrote hold the same Parquet tables row
    for row and the same pages, but for each run's own id and time."""
    assert got["site"]["pages"] == expected["site"]["pages"]
    tables = {manifest["run_id"]: version_tables(Path(manifest["version"]))
              for manifest in (expected, got)}
    wanted, found = tables[expected["run_id"]], tables[got["run_id"]]
    assert sorted(found) == sorted(wanted)
    shards = expected["shards"]
    assert {"children.parquet", "rejects.parquet", f"events/shard={shards - 1}",
            f"chronology/shard={shards - 1}"} <= set(found)
    for name, table in wanted.items():
        assert found[name].schema == table.schema, name
        assert found[name].num_rows == table.num_rows, name
        for column in table.column_names:
            if column in RUN_ID_COLUMNS:
                assert set(found[name][column].to_pylist()) <= {got["run_id"]}, (name, column)
            else:
                assert found[name][column].equals(table[column]), (name, column)
    pages = {manifest["run_id"]: _pages(Path(manifest["version"]), manifest["run_id"])
             for manifest in (expected, got)}
    assert pages[got["run_id"]] == pages[expected["run_id"]]
    assert len(pages[got["run_id"]]) == got["site"]["pages"] + 1  # and the index


def _pages(version: Path, run_id: str) -> dict[str, str]:
    """Each page of a version's site by its path, the run's id and time taken out."""
    return {str(path.relative_to(version)): re.sub(
        r"(<dt>Generated at</dt><dd>)[^<]*", r"\1", path.read_text(encoding="utf-8")
    ).replace(run_id, "RUN") for path in (version / "site").rglob("*.html")}
