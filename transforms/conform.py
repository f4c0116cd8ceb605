"""Conform raw source tables: one liberal reading of what real extracts contain.

Real extracts differ between councils: SQLite holds dates as text with or without a
time part, PostgreSQL sends real DATE and TIMESTAMP columns; code sets arrive as codes
or as descriptions; Y/N flags are spelt many ways. Conforming turns all of that into
one typed shape and leaves every judgement about good and bad values to the
expectation suites, with two exceptions that the suites cannot see once a value is
typed: text that is not a date at all, and exact copies of a row.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa

from transforms.frames import in_set, lookup, per_distinct, stripped
from transforms.rejects import concat_rejects, empty_rejects, rejects_for
from transforms.ssd import (
    FLAG_VALUES,
    OWNER_PERSON,
    PERSON_ID,
    PERSON_TABLE,
    CodeSet,
    SourceTable,
)

# Dates more than 40 weeks before birth (or the expected birth) cannot be about this child.
PREGNANCY = pd.Timedelta(days=280)

EXISTS = "_exists__"
KEY_COPIES = "_key_copies"
# Rows already rejected by an earlier step. They stay in the table, and their later
# failures are ignored, until the table is split into shards: a table is then copied
# once, rather than once for each step that drops a few of its rows.
REJECTED = "_rejected"
NOT_BEFORE_EARLIEST = "_not_before_earliest__"
READABLE_JSON = "_readable_json__"


@dataclass(frozen=True)
class Conformed:
    frame: pd.DataFrame
    rejects: pd.DataFrame


def owner_people(parent: pd.DataFrame, parent_table: SourceTable, key: str) -> pd.Series:
    """The child of each parent key, where exactly one child holds it."""
    pairs = parent[[key, parent_table.person]].dropna().drop_duplicates()
    pairs = pairs[~pairs[key].duplicated(keep=False)]
    return pd.Series(pairs[parent_table.person].to_numpy(), index=pairs[key], dtype="str")


def _parse_dates(text: pd.Series) -> pd.Series:
    """ISO 8601 dates and date-times as datetime64[ns]; NaT for blanks and for non-dates."""
    return pd.to_datetime(stripped(text), format="ISO8601", errors="coerce").astype(
        "datetime64[ns]")


def _dates(values: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Parse a date column; return (datetime64[ns] values, mask of unreadable values)."""
    if pd.api.types.is_datetime64_any_dtype(values):
        parsed = values
        if getattr(parsed.dt, "tz", None) is not None:
            parsed = parsed.dt.tz_convert(None)
        return parsed.astype("datetime64[ns]"), pd.Series(False, index=values.index)
    if values.dtype == object and len(values.dropna()) and not isinstance(
            values.dropna().iloc[0], str):
        # Date objects from a database driver.
        return pd.to_datetime(values).astype("datetime64[ns]"), pd.Series(False, index=values.index)
    # A few thousand distinct days recur across millions of rows: parse each once.
    parsed = per_distinct(values, _parse_dates)
    blank = per_distinct(values, lambda text: stripped(text).isna())
    return parsed, values.notna() & ~blank.fillna(True).astype(bool) & parsed.isna()


def _codes(values: pd.Series, code_set: CodeSet) -> pd.Series:
    """Map descriptions to codes; leave unknown values as they are for the suites to see."""
    return per_distinct(values, lambda text: _code_of(text, code_set))


def _code_of(text: pd.Series, code_set: CodeSet) -> pd.Series:
    text = stripped(text)
    mapped = text.replace(code_set.aliases) if code_set.aliases else text
    for prefix, code in code_set.prefixes.items():
        mapped = mapped.mask(mapped.str.startswith(prefix, na=False), code)
    return mapped


def _flags(values: pd.Series) -> pd.Series:
    return per_distinct(values, _flag_of)


def _flag_of(text: pd.Series) -> pd.Series:
    text = stripped(text)
    return text.str.upper().map(FLAG_VALUES).fillna(text).astype("str")


def conform_table(table: SourceTable, frame: pd.DataFrame) -> Conformed:
    """Typed, trimmed, code-normalised table; rows whose dates cannot be read are marked
    `_rejected` and returned as rejects (unless an earlier step rejected them)."""
    columns: dict[str, pd.Series] = {}
    unreadable: dict[str, pd.Series] = {}
    for column in frame.columns:
        values = frame[column]
        if column.startswith("_"):
            columns[column] = values
        elif column in table.dates:
            columns[column], unreadable[column] = _dates(values)
        elif column in table.codes:
            columns[column] = _codes(values, table.codes[column])
        elif column in table.flags:
            columns[column] = _flags(values)
        else:
            columns[column] = stripped(values)
    conformed = pd.DataFrame(columns, index=frame.index)

    rejects = []
    bad = rejected(conformed)
    for column, mask in unreadable.items():
        new = mask & ~bad
        if new.any():
            rows = conformed[new]
            # The value itself is not quoted: a date column may hold free text by mistake.
            reason = (f"{column} holds " + frame.loc[new, column].astype("str").str.len()
                      .astype("str") + " characters that are not an ISO 8601 date")
            rejects.append(rejects_for(table.name, rows, table.key, table.child_column,
                                       "conform.readable_date", reason))
        bad |= mask
    return Conformed(conformed.assign(**{REJECTED: bad.to_numpy()}), concat_rejects(rejects))


def rejected(frame: pd.DataFrame) -> pd.Series:
    """Which rows an earlier step rejected (none, for a frame no step has marked)."""
    if REJECTED in frame:
        return frame[REJECTED].astype(bool)
    return pd.Series(False, index=frame.index)


def mark_exact_copies(table: SourceTable, frame: pd.DataFrame) -> Conformed:
    """Reject all but the first of several identical rows; count the copies of each key.

    Identical rows say the same thing twice, so one is kept and the others are rejected.
    Rows that share a key but differ cannot be told apart: `_key_copies` lets the suite
    reject all of them. Keys are compared trimmed, blank being none, as the build reads
    them: "K1" and "K1  " are one key.
    """
    key = stripped(frame[table.key])
    shared = (key.duplicated(keep=False) & key.notna()).to_numpy()
    copies = np.zeros(len(frame), dtype=bool)
    counts = np.ones(len(frame), dtype="int64")
    rejects = empty_rejects()
    if shared.any():
        candidates = frame[shared]
        content = [c for c in frame.columns if c != "_row"]
        is_copy = candidates.duplicated(subset=content, keep="first").to_numpy()
        copies[np.flatnonzero(shared)[is_copy]] = True
        # Counting only among the rows that share a key keeps this cheap on large tables.
        differing = key[shared][~is_copy]
        counts[np.flatnonzero(shared)[~is_copy]] = differing.map(
            differing.value_counts()).to_numpy(dtype="int64")
        rejects = rejects_for(table.name, candidates[is_copy], table.key, table.child_column,
                              "conform.exact_copy",
                              f"exact copy of another {table.name} row with the same key")
    return Conformed(frame.assign(**{KEY_COPIES: counts, REJECTED: copies}), rejects)


def births(person: pd.DataFrame) -> pd.DataFrame:
    """One row per person id: date of birth, or expected birth for an unborn child."""
    person = person[~rejected(person)]
    born = person[PERSON_ID].notna() & ~person[PERSON_ID].duplicated(keep=False)
    unique = person[born]
    birth = unique["pers_dob"].fillna(unique["pers_expected_dob"])
    return pd.DataFrame({"child_id": unique[PERSON_ID].to_numpy(),
                         "birth_date": birth.to_numpy()}).astype({"birth_date": "datetime64[ns]"})


def with_birth_checks(table: SourceTable, frame: pd.DataFrame, birth: pd.DataFrame
                      ) -> pd.DataFrame:
    """Add `_not_before_earliest__<date>` for each event date: False where the date is
    before the earliest date an event of this child can carry (birth less a pregnancy);
    True where it is not, or where either date is unknown.

    One boolean per date lets GX check it as a single column; its column-pair check
    copies the whole batch several times per expectation. A comparison, not a
    difference: a date centuries out would overflow a difference in nanoseconds.
    """
    if table.name == PERSON_TABLE or not table.event_dates:
        return frame
    born = pd.Series(birth["birth_date"].to_numpy(), index=birth["child_id"].to_numpy(),
                     dtype="datetime64[ns]")
    earliest = lookup(frame[table.child_column], born) - PREGNANCY
    # A comparison with a missing date is False, so a missing date is never "before".
    return frame.assign(**{NOT_BEFORE_EARLIEST + column: ~(frame[column] < earliest).to_numpy()
                           for column in table.event_dates})


def _readable(text: str) -> bool:
    try:
        json.loads(text)
    except (ValueError, RecursionError):  # RecursionError: absurdly deep nesting
        return False
    return True


def with_json_checks(table: SourceTable, frame: pd.DataFrame) -> pd.DataFrame:
    """Add `_readable_json__<column>`: False where a JSON column holds text that is not JSON.

    GX parses JSON row by row in Python; outcome JSON repeats a few hundred distinct
    values across a million rows, so each distinct value is parsed once here.
    """
    return frame.assign(**{READABLE_JSON + column: per_distinct(
        frame[column], lambda text: text.map(_readable).astype("bool")
    ).fillna(True).astype("bool") for column in table.json})


def existence_checks(table: SourceTable) -> list[tuple[str, str, str]]:
    """(column, target table, target key) for each reference the table's rows make."""
    checks = []
    if table.owner is not None:
        checks.append((table.owner.column, table.owner.table, table.owner.key))
        # The child the owner names must exist too, or the row would reach a page of a
        # child the source does not know.
        checks.append((OWNER_PERSON, PERSON_TABLE, PERSON_ID))
    elif table.name != PERSON_TABLE:
        checks.append((table.person, PERSON_TABLE, PERSON_ID))
    checks += [(p.column, p.table, p.key) for p in table.parents]
    return checks


def with_existence(table: SourceTable, frame: pd.DataFrame,
                   known: dict[tuple[str, str], pa.Array]) -> pd.DataFrame:
    """Add `_exists__<column>`: False where a reference names no row of its target table.

    Membership of large id sets is a hash lookup here; handing the sets to GX as value
    sets would make it copy them many times per expectation (seconds per table).
    An empty reference counts as existing: whether it may be empty is another rule.
    """
    added = {}
    for column, target, key in existence_checks(table):
        values = frame[column]
        ids = known.get((target, key), pa.array([], pa.string()))
        # pyarrow's is_in is a vectorised hash lookup; pandas' isin on Arrow strings
        # falls back to a Python loop.
        found = in_set(pa.array(values, pa.string()), ids).to_numpy(zero_copy_only=False)
        added[EXISTS + column] = values.isna().to_numpy() | found
    return frame.assign(**added)
