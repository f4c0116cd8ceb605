from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pandas as pd
import pytest

from transforms import conform
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


def conformed(tables: dict[str, list[dict]]) -> dict[str, pd.DataFrame]:
    """Literal rows taken through numbering, owner resolution and conforming."""
    numbered = {name: conform.number_rows(raw_frame(name, rows)) for name, rows in tables.items()}
    resolved = conform.resolve_owners(numbered, TABLES_BY_NAME)
    return {name: conform.conform_table(TABLES_BY_NAME[name], frame).frame
            for name, frame in resolved.items()}


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
