"""The fixture DDL against the source contract and the SSD table definitions."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import yaml

from fixtures.generator import schema_statements
from transforms.ssd import CASE_NOTES_TABLE, TABLES

SPEC = Path(__file__).parents[2] / "shared/spec/ssd"
# The spec's type names, as the DDL spells them.
SQL_TYPES = {"nvarchar": "NVARCHAR", "nchar": "NCHAR", "datetime": "DATETIME", "int": "INT",
             "float": "FLOAT"}


def _ddl() -> dict[str, dict[str, str]]:
    """table -> column -> declared type, read back from SQLite after running the DDL."""
    conn = sqlite3.connect(":memory:")
    for statement in schema_statements():
        conn.execute(statement)
    tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
    return {t: {row[1]: row[2] for row in conn.execute(f"PRAGMA table_info({t})")}
            for t in tables}


def test_every_contract_column_is_in_the_ddl() -> None:
    ddl = _ddl()
    for spec in TABLES:
        assert spec.name in ddl, spec.name
        missing = set(spec.columns) - set(ddl[spec.name])
        assert not missing, f"{spec.name} lacks {sorted(missing)}"


def test_no_keys_or_unique_constraints() -> None:
    # Real extracts hold duplicate keys and the generator injects them; a constraint
    # would make SQLite refuse the very rows the pipeline must learn to reject.
    text = " ".join(schema_statements()).upper()
    assert "PRIMARY KEY" not in text and "UNIQUE" not in text


def test_ddl_matches_the_ssd_spec() -> None:
    if not SPEC.is_dir():
        pytest.skip(f"SSD spec folder not found at {SPEC} (shared/ is laid beside the repo)")
    ddl = _ddl()
    for table, columns in ddl.items():
        if table == CASE_NOTES_TABLE:
            continue  # the project's own extension, not in the SSD
        fields = yaml.safe_load((SPEC / f"{table}.yml").read_text())["nodes"][0]["fields"]
        expected = {f["name"]: SQL_TYPES[f["type"].lower()] for f in fields}
        assert columns == expected, table


def test_case_notes_extension_columns() -> None:
    ddl = _ddl()
    assert ddl[CASE_NOTES_TABLE] == {
        "casn_case_note_id": "NVARCHAR", "casn_person_id": "NVARCHAR",
        "casn_note_date": "DATETIME", "casn_note_type": "NVARCHAR", "casn_author": "NVARCHAR",
        "casn_team": "NVARCHAR", "casn_note_text": "NVARCHAR", "casn_significant_flag": "NCHAR",
    }
    assert CASE_NOTES_TABLE not in " ".join(schema_statements(case_notes=False))
