"""Read the source tables from any SQLAlchemy URL into Arrow.

The URL is how a person names a database; behind it the fastest reader that fits is
chosen: ADBC (Arrow-native) for SQLite and PostgreSQL, plain SQLAlchemy for anything
else. Only the columns in the source contract are read, and only for the children
asked for. A missing table or column is a `SourceSchemaError` naming it; errors from
the connection itself are left to the caller's retries.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa
from sqlalchemy.engine import URL, make_url

from transforms.parts import PART_ROWS, PartWriter, SourceRead
from transforms.ssd import PERSON_ID, PERSON_TABLE, TABLES_BY_NAME, SourceTable

# The source's password travels in this environment variable, never as a flow parameter:
# Prefect stores parameters in its database, readable by anyone on the machine.
PASSWORD_VARIABLE = "CHRONOLOGY_SOURCE_PASSWORD"


class SourceSchemaError(RuntimeError):
    """The source cannot be used as given: missing, unreadable, or lacking a table or
    column the pipeline needs. Retrying will not help."""


def without_password(source: str) -> tuple[str, str | None]:
    """The source with its password taken out, and the password (None if it had none)."""
    if "://" not in source:
        return source, None
    url = source_url(source)
    if url.password is None:
        return source, None
    return url.set(password=None).render_as_string(hide_password=False), str(url.password)


def source_url(source: str | Path) -> URL:
    """SQLAlchemy URL for a URL string or a path to an SQLite file.

    A URL with a user and no password takes the password from CHRONOLOGY_SOURCE_PASSWORD.
    """
    text = str(source)
    if "://" not in text:
        path = Path(text).expanduser().resolve()
        if not path.is_file():
            raise SourceSchemaError(f"source database {path} does not exist")
        return URL.create("sqlite", database=str(path))
    try:
        url = make_url(text)
    except sa.exc.ArgumentError as error:
        raise SourceSchemaError(f"not a database URL: {error}") from None
    if url.get_backend_name() == "sqlite" and url.database and not Path(url.database).is_file():
        # SQLite would quietly create an empty database and report every table missing.
        raise SourceSchemaError(f"source database {url.database} does not exist")
    password = os.environ.get(PASSWORD_VARIABLE)
    if url.username and url.password is None and password:
        url = url.set(password=password)
    return url


def safe_url(url: URL) -> str:
    """The URL as it may be printed and stored: never with its password."""
    return url.render_as_string(hide_password=True)


def present_tables(url: URL, tables: Sequence[SourceTable]) -> list[SourceTable]:
    """The tables to read; raises naming every required table or column that is missing.

    Optional tables (the case-note extension) that are absent are left out.
    """
    try:
        engine = sa.create_engine(url)
    except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError, ImportError) as error:
        raise SourceSchemaError(f"cannot open {safe_url(url)}: {error}") from None
    try:
        inspector = sa.inspect(engine)
        existing = {name.lower(): name for name in inspector.get_table_names()}
        problems: list[str] = []
        found: list[SourceTable] = []
        for table in tables:
            if table.name.lower() not in existing:
                if table.required:
                    problems.append(f"table {table.name} is missing")
                continue
            found_columns = inspector.get_columns(existing[table.name.lower()])
            columns = {c["name"].lower() for c in found_columns}
            absent = [c for c in table.columns if c.lower() not in columns]
            problems += [f"column {table.name}.{c} is missing" for c in absent]
            found.append(table)
    except sa.exc.OperationalError as error:
        raise ConnectionError(f"cannot reach the source database {safe_url(url)}: "
                              f"{error.orig}") from None
    except sa.exc.DatabaseError as error:
        raise SourceSchemaError(f"{safe_url(url)} is not a readable database: "
                                f"{error.orig}") from None
    finally:
        engine.dispose()
    if problems:
        raise SourceSchemaError(f"the source {safe_url(url)} does not match the SSD contract: "
                                + "; ".join(problems))
    return found


def _literal(value: str) -> str:
    if "\x00" in value:
        raise ValueError("a child id cannot contain a NUL character")
    return "'" + value.replace("'", "''") + "'"


# The characters the build trims from ids and keys: Python's `str.strip` and Arrow's
# `utf8_trim_whitespace` agree on them (tests/test_source.py checks both).
WHITESPACE = ("\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003"
              "\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000")


def _trimmed(column: str, dialect: str) -> str:
    """SQL for a column's values as the build reads ids and keys: as text, trimmed, blank
    being none (`transforms.fingerprint.trimmed`). A CHAR column comes padded with
    spaces, and " P1 " names the child P1."""
    if dialect == "sqlite":
        text = f'TRIM("{column}", {_literal(WHITESPACE)})'
    elif dialect == "postgresql":
        text = f'BTRIM(CAST("{column}" AS TEXT), {_literal(WHITESPACE)})'
    else:  # spaces only, which is how CHAR pads, in any SQL dialect (docs/pipeline.md)
        text = f'LTRIM(RTRIM("{column}"))'
    return f"NULLIF({text}, '')"


def _of_children(table: SourceTable, dialect: str, children: Sequence[str]) -> str:
    """SQL that is true for the rows of `table` that belong to `children` (trimmed ids):
    those naming one of them, or, for a table whose rows belong to a parent row
    (assessment factors, CLA reviews), those whose parent row names one."""
    ids = ", ".join(_literal(c) for c in children) or "NULL"
    if table.person is not None:
        return f"{_trimmed(table.person, dialect)} IN ({ids})"
    owner, parent = table.owner, TABLES_BY_NAME[table.owner.table]
    return (f"{_trimmed(owner.column, dialect)} IN (SELECT {_trimmed(owner.key, dialect)} "
            f'FROM "{owner.table}" WHERE {_trimmed(parent.person, dialect)} IN ({ids}))')


# The most of an SQLite file a read maps into memory (SQLite caps it lower if built so).
MMAP_BYTES = 1 << 40
# Marks the one typed row that `select_sql` puts first for SQLite (see there).
TYPING_ROW = "__chronology_typing_row"


def select_sql(table: SourceTable, dialect: str, children: Sequence[str] | None,
               rowids: tuple[int, int] | None = None,
               text: frozenset[str] = frozenset()) -> str:
    """SELECT for the contract's columns of one table, for some or all children.

    `rowids` (SQLite only) limits the read to rowid > low and <= high, so that one large
    table can be read in parallel parts; `text` (SQLite only) names the columns declared
    as text, which hold text already and are not cast.
    """
    conditions: list[str] = []
    if children is not None:
        conditions.append(_of_children(table, dialect, children))
    if rowids is not None:
        conditions.append(f"rowid > {int(rowids[0])} AND rowid <= {int(rowids[1])}")
    where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
    if dialect == "sqlite":
        # SQLite stores each value with its own type; text is the one type every value has.
        # The ADBC driver fixes a column's Arrow type from the first batch of rows and takes
        # an all-NULL column for an integer, so a first row of empty strings types every
        # column as text; `_read` drops it again. A column declared as text holds text
        # (or bytes, which `_read` makes text): casting it cost a fifth of the read.
        columns = ", ".join(f'"{c}"' if c in text else f'CAST("{c}" AS TEXT) AS "{c}"'
                            for c in table.columns)
        typing = ", ".join(f"'' AS \"{c}\"" for c in table.columns)
        return (f'SELECT 1 AS "{TYPING_ROW}", {typing} UNION ALL '
                f'SELECT NULL, {columns} FROM "{table.name}"{where}')
    columns = ", ".join(f'"{c}"' for c in table.columns)
    return f'SELECT {columns} FROM "{table.name}"{where}'


@contextmanager
def _adbc_batches(url: URL, sql: str) -> Iterator[pa.RecordBatchReader]:
    if url.get_backend_name() == "sqlite":
        import adbc_driver_sqlite.dbapi as driver

        target = f"file:{url.database}?mode=ro"
    else:
        import adbc_driver_postgresql.dbapi as driver

        target = url.set(drivername="postgresql").render_as_string(hide_password=False)
    with driver.connect(target) as connection, connection.cursor() as cursor:
        if url.get_backend_name() == "sqlite":
            # The driver's default of 1,024 rows a batch halves its speed on large tables.
            cursor.adbc_statement.set_options(**{"adbc.sqlite.query.batch_rows": "65536"})
            # Pages read through a memory map, not copied by read(): a tenth of the read.
            cursor.execute(f"PRAGMA mmap_size = {MMAP_BYTES}")
            cursor.fetchall()
        cursor.execute(sql)
        yield cursor.fetch_record_batch()


def _batches(url: URL, sql: str) -> Iterator[pa.Table]:
    """The result of `sql`, a batch of rows at a time, as text where the driver read
    bytes, without `select_sql`'s typing row; one empty batch if it has no rows."""
    if url.get_backend_name() in ("sqlite", "postgresql"):
        with _adbc_batches(url, sql) as reader:
            empty = True
            for batch in reader:
                empty = False
                yield _cleaned(pa.Table.from_batches([batch]))
            if empty:
                yield _cleaned(reader.schema.empty_table())
        return
    import pandas as pd

    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            # Whole: pandas infers each batch's types alone (a batch of one column's
            # gaps would read as another type), and Arrow's parts must agree.
            frame = pd.read_sql(sa.text(sql), connection)
    finally:
        engine.dispose()
    yield _cleaned(pa.Table.from_pandas(frame, preserve_index=False))


def _cleaned(result: pa.Table) -> pa.Table:
    if TYPING_ROW in result.column_names:
        marker = result.column(TYPING_ROW)
        if marker.null_count == len(marker):
            pass  # a batch after the first
        elif marker.null_count == len(marker) - 1 and marker[0].is_valid:
            # SQLite returns the typing row first: a slice drops it without copying the
            # batch, where a filter copies every column.
            result = result.slice(1)
        else:
            result = result.filter(pc.is_null(marker))
        result = result.drop_columns([TYPING_ROW])
    return _as_text(result)


def _read(url: URL, sql: str) -> pa.Table:
    return pa.concat_tables(_batches(url, sql))


def _as_text(result: pa.Table) -> pa.Table:
    """Columns the driver read as bytes (an SQLite text column holding a blob among its
    first rows), as text."""
    for position, field in enumerate(result.schema):
        if pa.types.is_binary(field.type) or pa.types.is_large_binary(field.type):
            try:
                result = result.set_column(position, field.name,
                                           result.column(position).cast(pa.string()))
            except pa.ArrowInvalid:
                raise SourceSchemaError(f"column {field.name} holds bytes that are not UTF-8 "
                                        "text") from None
    return result


class _Part(NamedTuple):
    """A part of a table to read: a range of rowids (None: the whole table), and about how
    many rows it holds (0: not known)."""

    rowids: tuple[int, int] | None
    rows: int


def _layout(url: URL, table: SourceTable) -> tuple[list[_Part], frozenset[str]]:
    """For an SQLite table: rowid ranges of at most PART_ROWS rows (one part for a small
    table), and the columns declared as text (SQLite's text affinity: a declared type
    naming CHAR, CLOB or TEXT, and not INT). Other sources: one part, every column cast."""
    if url.get_backend_name() != "sqlite":
        return [_Part(None, 0)], frozenset()
    import sqlite3

    with sqlite3.connect(f"file:{url.database}?mode=ro", uri=True) as connection:
        # Each in a query of its own: SQLite looks up a lone MIN or MAX of the rowid, but
        # scans the whole table for the two together (1.6 s for 5.5 million case notes).
        lowest, highest = connection.execute(
            f'SELECT (SELECT MIN(rowid) FROM "{table.name}"), '
            f'(SELECT MAX(rowid) FROM "{table.name}")').fetchone()
        declared = {name.lower(): (kind or "").upper() for _, name, kind, *_ in
                    connection.execute(f'PRAGMA table_info("{table.name}")')}
    text = frozenset(c for c in table.columns if "INT" not in declared.get(c.lower(), "INT")
                     and any(word in declared[c.lower()] for word in ("CHAR", "CLOB", "TEXT")))
    if highest is None or highest - lowest < PART_ROWS:
        return [_Part(None, 0 if highest is None else highest - lowest + 1)], text
    # From the lowest rowid, which may be 0 or below (an INTEGER PRIMARY KEY is the rowid).
    return [_Part((low, low + PART_ROWS), min(PART_ROWS, highest - low))
            for low in range(lowest - 1, highest, PART_ROWS)], text


def _refuse_shared_keys(url: URL, present: Sequence[SourceTable],
                        children: Sequence[str], rows: dict[str, int], workers: int) -> None:
    """Fail when reading only `children` could decide a row differently from a full run.

    A full run rejects rows whose key another row of the table also has (`key.unique`),
    and rows that find their child through a parent's key (assessment factors through
    the assessment) when two children's parent rows share that key. A read of some
    children sees only their own rows, so it would keep such a row, or give it to the
    child asked for. Such a run stops instead, and says which table.

    The tables are asked on `workers` connections at once, the largest (by `rows`)
    first: comparing trimmed ids and keys makes SQLite trim every one (5.5 million case
    notes: ~3 s, against ~0.5 s for the raw values).
    """
    names = {table.name for table in present}
    dialect = url.get_backend_name()
    # (table, key column) whose values must not be shared with other rows, each once: a
    # parent's key may be its own and its dependants' owner key too.
    checks: dict[tuple[str, str], tuple[SourceTable, str]] = {}
    for table in present:
        if table.person is not None or table.owner.table in names:
            checks[table.name, table.key] = (table, table.key)
        if table.person is None and table.owner.table in names:
            checks[table.owner.table, table.owner.key] = (TABLES_BY_NAME[table.owner.table],
                                                          table.owner.key)

    def shared_keys(check: tuple[SourceTable, str]) -> int:
        table, key = check
        # The rows a read of `children` takes, and keys compared as the build does. The
        # rows holding one of these children's keys first: few, and only they are then
        # asked whether they are another child's.
        mine, trimmed_key = _of_children(table, dialect, children), _trimmed(key, dialect)
        return _read(url, f"SELECT COUNT(DISTINCT {trimmed_key}) AS shared "
                          f'FROM "{table.name}" WHERE {trimmed_key} IN (SELECT '
                          f'{trimmed_key} FROM "{table.name}" WHERE {mine}) AND '
                          # Not mine, a row naming no child included (NULL is not
                          # true); CASE, as SQL Server has no boolean values.
                          f"CASE WHEN {mine} THEN 0 ELSE 1 END = 1").column(0)[0].as_py()

    largest_first = sorted(checks.values(), key=lambda check: -rows[check[0].name])
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        found = list(pool.map(shared_keys, largest_first))
    for (table, _), shared in zip(largest_first, found, strict=True):
        if shared:
            raise SourceSchemaError(
                f"{shared} {table.name} key(s) of the children asked for are also held by "
                "rows of other children (or of none), so a read of these children alone "
                "could keep rows a full run rejects, or give rows to the wrong child; "
                "rebuild every child instead")


def read_source_parts(url: URL, tables: Sequence[SourceTable],
                      children: Sequence[str] | None = None, workers: int = 2,
                      folder: Path | None = None) -> SourceRead:
    """Every present table of the contract, read in parallel, in parts
    (`transforms.parts`): written to Arrow files in `folder` as they arrive, so that a
    large source is never held whole, or, with no folder, held in memory.

    Large SQLite tables are read in rowid ranges on several connections at once (the
    driver releases the GIL); each table's parts are in rowid order.
    """
    present = present_tables(url, tables)
    if PERSON_TABLE not in {t.name for t in present}:
        raise SourceSchemaError(f"table {PERSON_TABLE} is missing ({PERSON_ID} names children)")
    layouts = {table.name: _layout(url, table) for table in present}
    if children is not None:
        _refuse_shared_keys(url, present, children, {
            name: sum(part.rows for part in parts) for name, (parts, _) in layouts.items()},
            workers)
    jobs = [(table, part) for table in present for part in layouts[table.name][0]]

    def read_part(job: int) -> PartWriter:
        table, part = jobs[job]
        writer = PartWriter(None if folder is None else folder / table.name, f"part-{job}")
        try:
            for batch in _batches(url, select_sql(table, url.get_backend_name(), children,
                                                  part.rowids, layouts[table.name][1])):
                writer.write(batch)
        except BaseException:
            writer.abort()
            raise
        writer.close()
        return writer

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        # The largest parts first, so that the threads finish together rather than one
        # reading the last large part alone.
        reads = {job: pool.submit(read_part, job)
                 for job in sorted(range(len(jobs)), key=lambda job: -jobs[job][1].rows)}
        parts: dict[str, list] = {}
        rows: dict[str, list[int]] = {}
        try:
            for job, (table, _) in enumerate(jobs):  # each table's parts in rowid order
                written = reads[job].result()
                parts.setdefault(table.name, []).extend(written.parts)
                rows.setdefault(table.name, []).extend(written.part_rows)
        except BaseException:
            # One part failed: the run fails (or retries), so the rest need not be read.
            pool.shutdown(cancel_futures=True)
            raise
    return SourceRead(parts, rows, folder)


def read_source(url: URL, tables: Sequence[SourceTable], children: Sequence[str] | None = None,
                workers: int = 2) -> dict[str, pa.Table]:
    """Every present table of the contract, read in parallel, as whole Arrow tables
    (`read_source_parts`, held in memory)."""
    read = read_source_parts(url, tables, children, workers)
    return {name: read.table(name) for name in read}
