"""Fingerprints of each child's source rows, to tell which children changed since a run.

A child's outputs are a function of their own rows, of a few facts about those rows
that only the whole source settles (is the row's key held by another row, does each id
it points at exist), of the rules, of chronology's code and of the "as of" date. The
fingerprint covers the first two; the run compares the rest (see `flows/incremental.py`).

Each row gets a 64-bit hash of its values, column by column, and a child's fingerprint
is the sum (modulo 2^64) of their rows' hashes, salted by table. The sum makes the
fingerprint independent of row order, which a source does not promise, while a changed,
added or removed row changes it. Hashing is vectorised over Arrow buffers with NumPy:
ten million rows take seconds, where hashing row by row in Python would take minutes.
The hash guards against accidental change going unnoticed, not against an adversary.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from transforms.conform import existence_checks, owner_people
from transforms.frames import in_set, lookup
from transforms.parts import SourceRead
from transforms.ssd import OWNER_PERSON, SourceTable

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_NULL = np.uint64(0x5BD1E9955BD1E995)
# Strings are hashed this many at a time: few enough that the temporary arrays (several
# of 8 bytes a row or word) stay in the processor's caches. 1,048,576 case-note ids and
# person ids took 0.30 s as one slice, 0.11 s in slices of 16,384 (0.17 s of 4,096).
SLICE_ROWS = 1 << 14
# A text column whose first this many values are mostly distinct is hashed value by
# value (`column_hashes`).
DISTINCT_SAMPLE = 4096
# The id under which rows that name no child are fingerprinted, as one group: it cannot
# be a real id (a NUL character), and is written as a missing id.
UNNAMED = "\0"


def salt(name: str) -> np.uint64:
    """A stable 64-bit number for a name (Python's own hash changes between processes)."""
    return np.uint64(int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(),
                                    "little"))


def _mix(x: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser, in place: every input bit changes about half the output
    bits."""
    with np.errstate(over="ignore"):
        x ^= x >> np.uint64(30)
        x *= _M1
        x ^= x >> np.uint64(27)
        x *= _M2
        x ^= x >> np.uint64(31)
    return x


def _string_hashes(array: pa.Array) -> np.ndarray:
    """The hash of each string of `array`: a sum over its 8-byte words, each mixed with
    its place in the string, then mixed with the string's length."""
    large = pa.types.is_large_string(array.type) or pa.types.is_large_binary(array.type)
    _, offsets_buffer, data_buffer = array.buffers()
    offsets = np.frombuffer(offsets_buffer, dtype=np.int64 if large else np.int32)[
        array.offset:array.offset + len(array) + 1].astype(np.int64)
    data = np.frombuffer(data_buffer, dtype=np.uint8)[offsets[0]:offsets[-1]] \
        if data_buffer is not None else np.zeros(0, np.uint8)
    offsets -= offsets[0]
    lengths = np.diff(offsets)
    padded = np.zeros(len(data) + 8, dtype=np.uint8)
    padded[:len(data)] = data
    # Every byte position as the start of an unaligned little-endian 8-byte word.
    words_at = np.ndarray(shape=(len(padded) - 7,), dtype="<u8", buffer=padded, strides=(1,))
    summed = _short_word_sums if len(lengths) and lengths.max() <= 8 * _SHORT_WORDS \
        else _word_sums
    with np.errstate(over="ignore"):
        hashes = summed(words_at, offsets[:-1], lengths)
        hashes ^= lengths.astype(np.uint64) * _M2
        return _mix(hashes)


# Strings of at most this many 8-byte words (ids, codes, dates) are summed word place by
# word place across all the strings at once: the same sums as `_word_sums`, without its
# arrays of one entry per word.
_SHORT_WORDS = 4


def _last_word_mask(tail: np.ndarray) -> np.ndarray:
    """For a word holding `tail` (1 to 8) bytes of its string, the mask of those bytes."""
    return np.where(tail >= 8, np.uint64(0xFFFFFFFFFFFFFFFF),
                    (np.uint64(1) << (tail.astype(np.uint64) << np.uint64(3))) - np.uint64(1))


def _short_word_sums(words_at: np.ndarray, starts: np.ndarray, lengths: np.ndarray
                     ) -> np.ndarray:
    total = np.zeros(len(lengths), dtype=np.uint64)
    last = len(words_at) - 1
    for place in range(-(-int(lengths.max()) // 8)):
        left = lengths - 8 * place   # bytes of the string from this word on
        has = left > 0
        words = words_at[np.minimum(starts + 8 * place, last)]
        words &= _last_word_mask(np.clip(left, 1, 8))
        words ^= np.uint64(place) * _GOLDEN
        total += np.where(has, _mix(words), np.uint64(0))
    return total


def _word_sums(words_at: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """For each string, the sum of its words, each mixed with its place in the string."""
    words_per = (lengths + 7) >> 3
    first_word = np.r_[0, np.cumsum(words_per)]
    total = int(first_word[-1])
    place = np.arange(total, dtype=np.int64)
    place -= np.repeat(first_word[:-1], words_per)           # the word's place in its string
    words = words_at[np.repeat(starts, words_per) + (place << 3)]
    # The last word of a string runs past its end: keep only the string's own bytes.
    ends = first_word[1:][lengths > 0] - 1
    words[ends] &= _last_word_mask(((lengths[lengths > 0] - 1) & 7) + 1)
    place_bits = place.view(np.uint64)
    place_bits *= _GOLDEN
    words ^= place_bits
    del place, place_bits
    terms = _mix(words)
    summed = np.zeros(total + 1, dtype=np.uint64)
    np.cumsum(terms, dtype=np.uint64, out=summed[1:])
    return summed[first_word[1:]] - summed[first_word[:-1]]


def _is_text(kind: pa.DataType) -> bool:
    return (pa.types.is_string(kind) or pa.types.is_large_string(kind)
            or pa.types.is_binary(kind) or pa.types.is_large_binary(kind))


def _encoded_hashes(encoded: pa.ChunkedArray) -> np.ndarray:
    """Hashes of a text column dictionary-encoded by `pc.dictionary_encode`, which gives
    every chunk one dictionary: each distinct value is hashed once (most text columns
    hold few: codes, teams, templated notes)."""
    if not encoded.num_chunks:
        return np.zeros(0, np.uint64)
    each = column_hashes(encoded.chunk(0).dictionary, distinct=True)
    codes = pa.chunked_array([chunk.indices for chunk in encoded.chunks]).combine_chunks()
    hashes = each[codes.fill_null(0).to_numpy(zero_copy_only=False)] if len(each) \
        else np.zeros(len(codes), np.uint64)
    if codes.null_count:
        hashes[codes.is_null().to_numpy(zero_copy_only=False)] = _NULL
    return hashes


def _text_hashes(text: pa.ChunkedArray, distinct: bool | None) -> np.ndarray:
    """`column_hashes` of text, a chunk at a time: a column read in batches comes in
    chunks, and combining them first copied every value (0.14 s for a million case
    notes' text)."""
    if distinct is None:
        sample = text.slice(0, DISTINCT_SAMPLE)
        distinct = pc.count_distinct(sample).as_py() * 2 > len(sample)
    if not distinct:
        return _encoded_hashes(pc.dictionary_encode(text))
    hashes = np.concatenate([_string_hashes(chunk.slice(start, SLICE_ROWS))
                             for chunk in text.chunks
                             for start in range(0, len(chunk), SLICE_ROWS)]
                            or [np.zeros(0, np.uint64)])
    if text.null_count:
        hashes[pc.is_null(text).to_numpy()] = _NULL
    return hashes


def column_hashes(column: pa.ChunkedArray | pa.Array, distinct: bool | None = None
                  ) -> np.ndarray:
    """A 64-bit hash of each value of a column; one value for every null.

    Text is hashed value by value when `distinct` (keys, JSON: building a dictionary of
    millions of distinct values costs more than hashing them), else each distinct value
    once (codes, templated notes); left unsaid, the column's first values decide. The
    hashes are the same either way."""
    if isinstance(column, pa.Array):
        column = pa.chunked_array([column])
    kind = column.type
    if pa.types.is_dictionary(kind):
        column = column.cast(kind.value_type)
        kind = column.type
    if _is_text(kind):
        return _text_hashes(column, distinct)
    array = column.combine_chunks()
    if pa.types.is_boolean(kind):
        hashes = _mix(array.fill_null(False).to_numpy(zero_copy_only=False)
                      .astype(np.uint64) + _GOLDEN)
    elif pa.types.is_null(kind):
        hashes = np.full(len(array), _NULL, dtype=np.uint64)
    elif pa.types.is_integer(kind) or pa.types.is_floating(kind) or \
            pa.types.is_temporal(kind):
        # Their bits, with the type: dates and times as the integers they are stored as.
        if pa.types.is_temporal(kind):
            array = array.view(pa.int32() if kind.bit_width == 32 else pa.int64())
        values = array.fill_null(0) if array.null_count else array
        numbers = values.to_numpy(zero_copy_only=False)
        bits = numbers.astype(np.float64).view(np.uint64) if pa.types.is_floating(kind) \
            else numbers.astype(np.int64 if numbers.dtype.kind == "i" else np.uint64
                                ).view(np.uint64)
        hashes = _mix(bits ^ salt(str(kind)))
    else:  # decimals, UUIDs and the like: as their text, or bytes
        return column_hashes(array.cast(pa.binary() if pa.types.is_fixed_size_binary(kind)
                                        else pa.string()), distinct)
    if array.null_count:
        hashes[array.is_null().to_numpy(zero_copy_only=False)] = _NULL
    return hashes


def row_hashes(columns: Iterable[tuple[str, np.ndarray]], rows: int) -> np.ndarray:
    """A 64-bit hash of each row from its named columns' hashes: which value is in which
    column counts, the order the columns are given in does not."""
    total = np.zeros(rows, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for name, hashes in columns:
            # An odd multiplier is invertible modulo 2^64: a change to any one column's
            # hash always changes the total. The row's hash is mixed once, after.
            total += hashes * (salt(name) | np.uint64(1))
    return total


def frame_hashes(frame: pd.DataFrame, columns: Iterable[str]) -> np.ndarray:
    """A 64-bit hash of each row of `frame` from the values of its `columns` (which value
    is in which column counts, as in `row_hashes`)."""
    return _mix(row_hashes(((name, column_hashes(pa.array(frame[name], from_pandas=True)))
                            for name in columns), len(frame)))


@dataclass(frozen=True)
class ChildRows:
    """What one source table says about each of its rows' children."""

    children: pa.Array        # the children of the table's rows (`UNNAMED` for none)...
    codes: np.ndarray         # ...and the position in `children` of each row's
    hashes: np.ndarray        # each row's hash, facts included, salted by table
    shared_keys: pa.Array     # children holding a key another child's row holds too


@dataclass(frozen=True)
class _SliceHashes:
    """The hashes of a slice of a table's rows: all but whether a row's key repeats,
    which only the whole table settles."""

    key: pa.Array            # each row's key, trimmed...
    key_hashes: np.ndarray   # ...and its hash
    named: pa.Array          # each row's child
    sums: np.ndarray         # each row's hash before the table's facts (`row_hashes`)


def _slice_hashes(table: SourceTable, raw: pa.Table, child: pa.DictionaryArray,
                  known: dict[tuple[str, str], pa.Array],
                  references: list[tuple[str, str, str]]) -> _SliceHashes:
    """Hash each row of (a slice of) one raw table, with whether each id it points at
    exists. `child` is each row's child, as `row_children` gives it."""
    # The build judges keys and references trimmed, blank being none: so do the facts.
    key = trimmed(raw[table.key])
    key_hashes = column_hashes(key, distinct=True)
    codes = child.indices.to_numpy(zero_copy_only=False)
    named = child.dictionary.take(child.indices)
    # The key and person columns hold one value a row: their trimmed values are hashed
    # already, and nearly every raw value is its trimmed value.
    hashed = {table.key: (key, key_hashes)}
    if table.person in raw.column_names:
        hashed[table.person] = (named, column_hashes(child.dictionary, distinct=True)[codes])
    columns = [(name, _raw_hashes(raw[name], *hashed[name]) if name in hashed
                else column_hashes(raw[name])) for name in raw.column_names]
    for column, target, target_key in references:
        ids = known.get((target, target_key), pa.array([], pa.string()))
        if column in (OWNER_PERSON, table.person):
            # A row's own person (or owner) id is its child, trimmed already: looked up
            # once per child.
            exists = in_set(child.dictionary, ids).take(child.indices)
        else:
            exists = in_set(trimmed(raw[column]), ids)
        columns.append((f"_exists:{column}", column_hashes(exists)))
    return _SliceHashes(key, key_hashes, named, row_hashes(columns, raw.num_rows))


def _table_rows(table: SourceTable, child: pa.DictionaryArray, slices: list[_SliceHashes]
                ) -> ChildRows:
    """The rows of a whole table, from the hashes of its slices, in order: with whether
    each row's key is held by another row, and which children share keys."""
    key = pa.chunked_array([part.key for part in slices], pa.string())
    key_hashes = np.concatenate([part.key_hashes for part in slices])
    named = pa.chunked_array([part.named for part in slices], child.dictionary.type)
    repeated, shared = _repeated_keys(key, key_hashes, named)
    sums = np.concatenate([part.sums for part in slices])
    sums += row_hashes([("_key_repeated", repeated.astype(np.uint64))], len(sums))
    with np.errstate(over="ignore"):
        hashes = _mix(sums + salt(table.name))
    return ChildRows(children=child.dictionary,
                     codes=child.indices.to_numpy(zero_copy_only=False), hashes=hashes,
                     shared_keys=shared)


def _raw_hashes(raw: pa.ChunkedArray | pa.Array, trimmed_values: pa.Array,
                trimmed_hashes: np.ndarray) -> np.ndarray:
    """`column_hashes(raw, distinct=True)`, taken from the hashes of its trimmed values
    where trimming changed nothing, and hashed afresh only where it did."""
    if not _is_text(raw.type):
        return column_hashes(raw, distinct=True)
    raw = raw.combine_chunks() if isinstance(raw, pa.ChunkedArray) else raw
    differ = ~pc.fill_null(pc.equal(raw, trimmed_values), False).to_numpy(
        zero_copy_only=False)
    if not differ.any():
        return trimmed_hashes
    hashes = trimmed_hashes.copy()
    hashes[differ] = column_hashes(raw.filter(pa.array(differ)), distinct=True)
    return hashes


def _sums(codes: np.ndarray, values: np.ndarray, groups: int) -> np.ndarray:
    """The sum modulo 2^64 of `values` by group `codes`. `np.add.at` is slow, and
    `np.bincount` adds floats, exact below 2^53: so it adds 16-bit slices of the values
    (exact up to 2^37 rows), and the slices are put back together."""
    total = np.zeros(groups, dtype=np.uint64)
    for shift in (np.uint64(0), np.uint64(16), np.uint64(32), np.uint64(48)):
        part = ((values >> shift) & np.uint64(0xFFFF)).astype(np.float64)
        total += np.bincount(codes, weights=part, minlength=groups).astype(np.uint64) << shift
    return total


def trimmed(values: pa.ChunkedArray | pa.Array) -> pa.Array:
    """Values as text, trimmed, blank being missing: `transforms.frames.stripped` in
    Arrow, for whole raw columns."""
    text = pc.utf8_trim_whitespace(values.cast(pa.string()))
    if isinstance(text, pa.ChunkedArray):
        text = text.combine_chunks()
    return pc.if_else(pc.equal(text, ""), pa.scalar(None, pa.string()), text)


def held_twice(hashes: np.ndarray) -> np.ndarray:
    """Which of these 64-bit hashes another position holds too. Sorted, not NumPy's
    `unique` with counts: 0.4 s against 1.6 s for the 5.5 million case-note keys."""
    ordered = np.sort(hashes)
    twice = ordered[1:][ordered[1:] == ordered[:-1]]
    return pd.Series(hashes, copy=False).isin(twice).to_numpy()


def _repeated_keys(key: pa.ChunkedArray, key_hashes: np.ndarray, child: pa.ChunkedArray
                   ) -> tuple[np.ndarray, pa.Array]:
    """Which rows hold a key another row holds too, and the children holding a key that
    another child (or a row naming none: `UNNAMED`) holds. Equal hashes find the few
    candidates; their keys themselves settle it."""
    candidate = held_twice(key_hashes) & pc.is_valid(key).to_numpy(zero_copy_only=False)
    if not candidate.any():
        return candidate, pa.array([], pa.string())
    rows = pd.DataFrame({"key": key.filter(pa.array(candidate)).to_pandas().astype("str"),
                         "child": child.filter(pa.array(candidate)).to_pandas()})
    held_by_rows = rows.groupby("key").size()
    # Distinct children (the rows naming none counting as one) by key.
    held_by_children = rows.drop_duplicates(["key", "child"]).groupby("key").size()
    repeated = candidate.copy()
    repeated[candidate] = rows["key"].map(held_by_rows).to_numpy() > 1
    linked = rows.loc[rows["key"].map(held_by_children).to_numpy() > 1, "child"]
    return repeated, pa.array(linked.unique(), pa.string())


def child_fingerprints(parts: Iterable[ChildRows]) -> pd.DataFrame:
    """By child id (`UNNAMED` for the rows that name none): `fingerprint` (the sum of
    their rows' hashes, as a signed 64-bit number for Parquet) and `shares_keys` (a key
    of theirs is held by another child)."""
    parts = [part for part in parts if len(part.codes)]
    if not parts:
        return pd.DataFrame({"fingerprint": pd.Series(dtype="int64"),
                             "shares_keys": pd.Series(dtype="bool")},
                            index=pd.Index([], dtype="str", name="child_id"))
    # Each table's sums by its own children, then summed again by child across tables:
    # the tables' children are matched by Arrow's hash table, not as Python strings.
    by_table = np.concatenate([_sums(part.codes, part.hashes, len(part.children))
                               for part in parts])
    every = pc.dictionary_encode(pa.concat_arrays(
        [part.children.cast(pa.string()) for part in parts]))
    ids = every.dictionary
    total = _sums(every.indices.to_numpy(zero_copy_only=False), by_table, len(ids))
    shared = pa.concat_arrays([part.shared_keys.cast(pa.string()) for part in parts])
    return pd.DataFrame({"fingerprint": total.view(np.int64),
                         "shares_keys": pc.is_in(ids, value_set=shared).to_numpy(
                             zero_copy_only=False)},
                        index=pd.Index(ids.to_pandas(), dtype="str", name="child_id"))


def dated_from(raw: pa.Table, child: pa.DictionaryArray, dates: Iterable[str],
               day: pd.Timestamp) -> pd.Series:
    """The earliest date on or after `day` in any of `dates`, by child (`UNNAMED` for
    rows that name none), for the children with one. Text dates are compared as ISO 8601
    text; text that is not a date counts as on `day` (a run cannot tell when such a row
    would change its child's outputs)."""
    found = []
    text_day = day.date().isoformat()
    for name in dates:
        if name not in raw.column_names:
            continue
        column = raw[name]
        if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
            column = trimmed(column)  # as conforming reads a date
            hit = pc.greater_equal(column, text_day)
        else:
            hit = pc.greater_equal(column.cast(pa.timestamp("us")),
                                   pa.scalar(day.to_pydatetime(), pa.timestamp("us")))
        hit = pc.fill_null(hit, False)
        if not pc.any(hit).as_py():
            continue
        rows = pa.table({"child": child.indices, "when": column}).filter(hit)
        when = pd.to_datetime(rows["when"].to_pandas().astype("str").str.slice(0, 10),
                              format="%Y-%m-%d", errors="coerce")
        found.append(pd.Series(when.fillna(day).to_numpy(), index=pd.Index(
            child.dictionary.take(rows["child"]).to_pandas(), dtype="str")))
    if not found:
        return pd.Series(dtype="datetime64[ns]", index=pd.Index([], dtype="str"))
    every = pd.concat(found)
    return every.groupby(level=0).min().astype("datetime64[ns]")


def row_children(read: SourceRead, tables: dict[str, SourceTable],
                 map_tables: Callable = map) -> dict[str, pa.DictionaryArray]:
    """The child of each row of each table read, as the build will find it: its person
    id (trimmed; blank is none), or for a table whose rows belong to a parent row
    (assessment factors, CLA reviews), the child of that parent (its key, person id and
    the row's reference to it trimmed likewise), where exactly one child holds its key
    (`transforms.conform.owner_people`; the build's `_owner_person_id`,
    `transforms.prepare.mark_source`); `UNNAMED` for a row that names none.
    Dictionary-encoded: a table has far fewer children than rows, and what is asked of
    a row's child (is it taken, does it exist) is then asked once per child."""
    def children_of(name: str) -> pa.DictionaryArray:
        return pc.dictionary_encode(pc.fill_null(found_children(name), UNNAMED))

    def found_children(name: str) -> pa.Array:
        spec = tables[name]
        if spec.owner is None:
            return trimmed(read.columns(name, [spec.person])[spec.person])
        parent_spec = tables[spec.owner.table]
        if spec.owner.table not in read:
            return pa.nulls(read.rows(name), pa.string())
        # Keys and ids trimmed, as the build judges them: CHAR columns come padded.
        parent = read.columns(spec.owner.table, [spec.owner.key, parent_spec.person])
        parent = pa.table({column: trimmed(parent[column]) for column in parent.column_names})
        people = owner_people(parent.to_pandas(), parent_spec, spec.owner.key)
        owners = trimmed(read.columns(name, [spec.owner.column])[spec.owner.column])
        return pa.array(lookup(owners.to_pandas(), people), pa.string())

    return dict(zip(read, map_tables(children_of, read), strict=True))


def fingerprints(read: SourceRead, tables: dict[str, SourceTable],
                 children_of_rows: dict[str, pa.DictionaryArray],
                 known: dict[tuple[str, str], pa.Array], map_tables: Callable = map
                 ) -> pd.DataFrame:
    """`child_fingerprints` of every child of the whole source `read`. `map_tables` runs
    the parts of the tables (a thread pool's `map` runs them side by side: NumPy and
    Arrow release the GIL), then the tables: a large table is hashed a part at a time,
    so that the threads share it as they share the others, and only the parts being
    hashed are held."""
    largest_first = sorted(read, key=lambda name: -read.rows(name))
    parts = [(name, number, start) for name in largest_first
             for number, start in enumerate(read.starts(name))]

    def hash_part(name: str, number: int, start: int) -> _SliceHashes:
        return _slice_hashes(tables[name], read.part(name, number),
                             children_of_rows[name].slice(start, read.part_rows[name][number]),
                             known, existence_checks(tables[name]))

    hashed: dict[str, list[_SliceHashes]] = {}
    for (name, *_), part in zip(parts, map_tables(lambda job: hash_part(*job), parts),
                                strict=True):
        hashed.setdefault(name, []).append(part)
    return child_fingerprints(map_tables(
        lambda name: _table_rows(tables[name], children_of_rows[name], hashed[name]),
        largest_first))


@dataclass(frozen=True)
class SourceFacts:
    """What a run learns about each child from the whole of what it read."""

    children_of_rows: dict[str, pa.DictionaryArray]  # each row's child, by table
    known: dict[tuple[str, str], pa.Array]  # ids that references may point at
    # By child id: fingerprint, shares_keys, since (a record dated on or after --since)
    # and next_record (their first record dated after the as-of date).
    children: pd.DataFrame


def source_facts(read: SourceRead, tables: dict[str, SourceTable],
                 known: dict[tuple[str, str], pa.Array], as_of: pd.Timestamp,
                 since: pd.Timestamp | None, map_tables: Callable = map) -> SourceFacts:
    """Each row's child, and each child's fingerprint and dated records, from `read`
    (`map_tables` runs the tables side by side, as in `fingerprints`)."""
    of_rows = row_children(read, tables, map_tables)
    facts = fingerprints(read, tables, of_rows, known, map_tables)

    def dated(day: pd.Timestamp) -> list[pd.Series]:
        return list(map_tables(lambda name: dated_from(
            read.columns(name, tables[name].dates), of_rows[name], tables[name].dates, day),
            read))

    later = dated(as_of.normalize() + pd.Timedelta(days=1))
    facts["next_record"] = pd.concat(later).groupby(level=0).min().reindex(facts.index) \
        if any(len(found) for found in later) else pd.NaT
    facts["next_record"] = facts["next_record"].astype("datetime64[ns]")
    if since is None:
        facts["since"] = False
    else:
        facts["since"] = facts.index.isin(pd.Index([]).append(
            [found.index for found in dated(since)]))
    return SourceFacts(of_rows, known, facts)
