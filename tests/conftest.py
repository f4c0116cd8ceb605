from __future__ import annotations

import os

import pandas as pd

from transforms import conform
from transforms.ssd import TABLES_BY_NAME

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")


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
