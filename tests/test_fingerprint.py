"""Fingerprints of children's source rows, and how long their outputs stay right."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from transforms import fingerprint
from transforms.fingerprint import (
    UNNAMED,
    column_hashes,
    dated_from,
    fingerprints,
    frame_hashes,
    row_children,
    source_facts,
)
from transforms.freshness import stale_on
from transforms.parts import PART_ROWS, SourceRead
from transforms.prepare import known_ids
from transforms.rules import load_rules
from transforms.ssd import TABLES_BY_NAME

AS_OF = pd.Timestamp("2026-03-31")


def _source(contacts: list[tuple], people=("C1", "C2", "C3"), factors=()) -> dict:
    """A tiny source: people, contacts (id, person, date, description), and assessment
    factors (id, assessment id) of one assessment per person (A-<person>)."""
    return {
        "ssd_person": pa.table({"pers_person_id": list(people),
                                "pers_dob": ["2015-06-01"] * len(people)}),
        "ssd_contacts": pa.table({
            "cont_contact_id": [c[0] for c in contacts],
            "cont_person_id": [c[1] for c in contacts],
            "cont_contact_date": [c[2] for c in contacts],
            "cont_contact_source_desc": [c[3] for c in contacts]}, schema=pa.schema(
            [(name, pa.string()) for name in ("cont_contact_id", "cont_person_id",
                                              "cont_contact_date",
                                              "cont_contact_source_desc")])),
        "ssd_cin_assessments": pa.table({
            "cina_assessment_id": [f"A-{p}" for p in people],
            "cina_person_id": list(people),
            "cina_referral_id": pa.nulls(len(people), pa.string())}),
        "ssd_assessment_factors": pa.table({
            "cinf_table_id": [f[0] for f in factors],
            "cinf_assessment_id": [f[1] for f in factors]},
            schema=pa.schema([("cinf_table_id", pa.string()),
                              ("cinf_assessment_id", pa.string())])),
    }


def _facts(raw: dict, since: pd.Timestamp | None = None, part_rows: int = PART_ROWS
           ) -> pd.DataFrame:
    read = SourceRead.in_memory(raw, part_rows)
    return source_facts(read, TABLES_BY_NAME, known_ids(read), AS_OF, since).children.sort_index()


CONTACTS = [("K1", "C1", "2025-01-01", "Police"), ("K2", "C1", "2025-02-01", "School"),
            ("K3", "C2", "2025-03-01", None), ("K4", "C3", "2025-04-01", "")]


def test_row_order_does_not_matter_and_a_change_moves_only_its_child():
    base = _facts(_source(CONTACTS))
    assert base["fingerprint"].is_unique
    assert _facts(_source(CONTACTS[::-1]))["fingerprint"].equals(base["fingerprint"])
    edited = [*CONTACTS[:1], ("K2", "C1", "2025-02-01", "Schools"), *CONTACTS[2:]]
    changed = _facts(_source(edited))["fingerprint"] != base["fingerprint"]
    assert changed.to_dict() == {"C1": True, "C2": False, "C3": False}
    removed = _facts(_source(CONTACTS[1:]))["fingerprint"] != base["fingerprint"]
    assert removed.to_dict() == {"C1": True, "C2": False, "C3": False}


def test_missing_and_empty_text_and_swapped_columns_differ():
    base = _facts(_source(CONTACTS))["fingerprint"]
    empty = [*CONTACTS[:2], ("K3", "C2", "2025-03-01", ""), CONTACTS[3]]
    assert _facts(_source(empty))["fingerprint"]["C2"] != base["C2"]
    raw = _source(CONTACTS)
    swapped = raw["ssd_contacts"].rename_columns(
        ["cont_contact_id", "cont_person_id", "cont_contact_source_desc",
         "cont_contact_date"])
    assert _facts({**raw, "ssd_contacts": swapped})["fingerprint"]["C1"] != base["C1"]


@settings(max_examples=50, deadline=None)
@given(st.lists(st.text(max_size=40), min_size=1, max_size=60, unique=True))
def test_distinct_text_hashes_apart_whole_sliced_or_chunked(texts):
    array = pa.array(texts, pa.string())
    whole = column_hashes(array, distinct=False)
    assert len(set(whole.tolist())) == len(texts)
    half = len(texts) // 2
    assert (column_hashes(array.slice(half)) == whole[half:]).all()
    chunked = pa.chunked_array([array.slice(0, half), array.slice(half)])
    assert (column_hashes(chunked) == whole).all()
    assert (column_hashes(array, distinct=True) == whole).all()
    assert (column_hashes(array) == whole).all()  # whichever way its first values choose
    assert (column_hashes(array.cast(pa.large_string())) == whole).all()


def test_a_frames_rows_hash_by_the_values_of_the_columns_asked_for():
    # What a rerun uses to know a row passed its suite before (`flows/verdicts.py`): the
    # values of the checked columns decide, in whichever order the columns come, whatever
    # pandas type holds them; a change to any one of them, or a value moved to another
    # column, gives another hash.
    ids = [f"N{i:05d}" for i in range(5000)]  # mostly distinct: hashed value by value
    frame = pd.DataFrame({"id": ids, "code": ["A", "B"] * 2500,
                          "when": pd.to_datetime(["2016-01-01"] * 4999 + [None]),
                          "seen": [True, False] * 2500, "other": range(5000)})
    hashes = frame_hashes(frame, ["id", "code", "when", "seen"])
    assert len(set(hashes.tolist())) == len(frame)
    assert (frame_hashes(frame[::-1], ["seen", "when", "code", "id"])[::-1] == hashes).all()
    assert (frame_hashes(frame.astype({"id": "object", "code": "category"}),
                         ["id", "code", "when", "seen"]) == hashes).all()
    assert (frame_hashes(frame.assign(other=0), ["id", "code", "when", "seen"])
            == hashes).all()
    changed = frame.assign(code=["A", "B"] * 2499 + ["A", "C"])
    differ = frame_hashes(changed, ["id", "code", "when", "seen"]) != hashes
    assert differ.tolist() == [False] * 4999 + [True]
    swapped = frame.assign(id=frame["code"], code=frame["id"])
    assert not (frame_hashes(swapped, ["id", "code", "when", "seen"]) == hashes).any()


def test_rows_without_a_person_column_belong_to_their_parents_child():
    raw = _source(CONTACTS, factors=[("F1", "A-C2"), ("F2", "A-C9"), ("F3", None)])
    children = row_children(SourceRead.in_memory(raw), TABLES_BY_NAME)
    assert children["ssd_assessment_factors"].to_pylist() == ["C2", UNNAMED, UNNAMED]
    base = _facts(_source(CONTACTS, factors=[("F1", "A-C2")]))
    more = _facts(raw)
    # The factor of C2 counts for C2; those that name no child count for nobody.
    assert more["fingerprint"]["C2"] == base["fingerprint"]["C2"]
    assert (_facts(_source(CONTACTS))["fingerprint"]["C2"] != base["fingerprint"]["C2"])


def test_a_row_owned_through_a_padded_id_belongs_to_the_trimmed_child():
    # CHAR columns come padded with spaces: the build trims ids and keys, so an
    # assessment naming " C2 " is C2's, and so are its factors, whichever side is padded.
    raw = _source(CONTACTS, factors=[("F1", "A-C2"), ("F2", " A-C3\t"), ("F3", "A-C1")])
    raw["ssd_cin_assessments"] = pa.table({
        "cina_assessment_id": ["A-C1 ", "A-C2", "A-C3"],
        "cina_person_id": ["C1", " C2 ", "C3"],
        "cina_referral_id": pa.nulls(3, pa.string())})
    children = row_children(SourceRead.in_memory(raw), TABLES_BY_NAME)
    assert children["ssd_assessment_factors"].to_pylist() == ["C2", "C3", "C1"]
    assert set(_facts(raw).index) == {"C1", "C2", "C3"}


def test_a_key_two_children_hold_marks_both_and_changes_when_it_is_no_longer_shared():
    shared = [*CONTACTS, ("K1", "C3", "2025-05-05", "Police")]
    facts = _facts(_source(shared))
    assert facts["shares_keys"].to_dict() == {"C1": True, "C2": False, "C3": True}
    alone = _facts(_source([c for c in shared if c[1] != "C3"]))
    # C1's rows did not change, but they are no longer rejected as duplicates.
    assert alone["fingerprint"]["C1"] != facts["fingerprint"]["C1"]
    assert not alone["shares_keys"].any()


def test_whether_an_id_a_row_points_at_exists_is_part_of_its_hash():
    read = SourceRead.in_memory(_source(CONTACTS))
    known = known_ids(read)
    of_rows = row_children(read, TABLES_BY_NAME)
    with_person = fingerprints(read, TABLES_BY_NAME, of_rows, known)["fingerprint"]
    # The same rows, but the person table no longer holds C3.
    without = fingerprints(read, TABLES_BY_NAME, of_rows,
                           {**known, ("ssd_person", "pers_person_id"): pa.array(["C1", "C2"])}
                           )["fingerprint"]
    assert (with_person != without).to_dict() == {"C1": False, "C2": False, "C3": True}


def test_a_table_hashed_in_parts_gives_the_fingerprints_it_gives_whole(monkeypatch):
    contacts = [(f"K{n}", f"C{n % 3 + 1}", f"2025-01-{n % 28 + 1:02d}", ["Police", None][n % 2])
                for n in range(20)]
    # K1 twice: whether a key repeats is settled across parts.
    raw = _source([*contacts, ("K1", "C3", "2025-05-05", "School")])
    whole = _facts(raw)
    assert _facts(raw, part_rows=3).equals(whole)
    monkeypatch.setattr(fingerprint, "SLICE_ROWS", 3)  # strings hashed a few at a time
    assert _facts(raw).equals(whole)
    assert whole["shares_keys"].to_dict() == {"C1": False, "C2": True, "C3": True}


def test_records_dated_after_as_of_and_since_are_found_by_child():
    future = [*CONTACTS, ("K5", "C2", "2026-06-01T10:00:00", "Police"),
              ("K6", "C3", "next tuesday", "Police")]
    facts = _facts(_source(future), since=pd.Timestamp("2025-03-01"))
    assert facts["next_record"]["C2"] == pd.Timestamp("2026-06-01")
    assert facts["next_record"]["C3"] == AS_OF + pd.Timedelta(days=1)  # not a date: now
    assert pd.isna(facts["next_record"]["C1"])
    assert facts["since"].to_dict() == {"C1": False, "C2": True, "C3": True}
    typed = pa.table({"when": pa.array([pd.Timestamp("2026-05-01"), None],
                                       pa.timestamp("us"))})
    found = dated_from(typed, pc.dictionary_encode(pa.array(["C1", "C2"])), ["when"], AS_OF)
    assert found.to_dict() == {"C1": pd.Timestamp("2026-05-01")}


def _child(birth: str | None, expected: str | None = None) -> pd.DataFrame:
    return pd.DataFrame({"child_id": ["C1"], "birth_date": pd.to_datetime([birth]),
                         "expected_birth_date": pd.to_datetime([expected])})


def _periods(*rows) -> pd.DataFrame:
    return pd.DataFrame(rows or None, columns=["child_id", "start_date", "end_date"]
                        ).astype({"start_date": "datetime64[ns]",
                                  "end_date": "datetime64[ns]"})


def _dated(*rows) -> pd.DataFrame:
    return pd.DataFrame(rows or None, columns=["child_id", "event_date", "end_date"]
                        ).astype({"event_date": "datetime64[ns]", "end_date": "datetime64[ns]"})


@pytest.mark.parametrize(("birth", "periods", "events", "expected"), [
    # Aged 10, nothing open, nothing recent: until the next birthday.
    ("2015-06-01", [], [("C1", "2020-01-01", None)], "2026-06-01"),
    # Aged 3: the age is in years and months, so until the next month's day.
    ("2022-11-15", [], [], "2026-04-15"),
    # A plan still open: durations and visit gaps move every day.
    ("2015-06-01", [("C1", "2025-01-01", None)], [], "2026-04-01"),
    # An event that ends after the as-of date.
    ("2015-06-01", [], [("C1", "2026-01-01", "2026-08-01")], "2026-04-01"),
    # An event leaves the recent history two years after it: a day early, to be safe.
    ("2015-06-01", [], [("C1", "2024-04-10", None)], "2026-04-09"),
    # Not born yet.
    (None, [], [], "2026-04-01"),
])
def test_outputs_go_stale_on_the_first_day_time_changes_them(birth, periods, events,
                                                              expected):
    child = _child(birth, expected=None if birth else "2026-07-01")
    found = stale_on(child, _periods(*periods), _dated(*events), _dated(), load_rules(),
                     AS_OF)
    assert found["C1"] == pd.Timestamp(expected)


def test_database_types_hash_by_value():
    """PostgreSQL sends dates, timestamps and numerics typed, not as text."""
    typed = [pa.array([date(2020, 1, 1), date(2020, 1, 2), None]),
             pa.array([datetime(2020, 1, 1, 10), datetime(2020, 1, 1, 11), None],
                      pa.timestamp("us")),
             pa.array([Decimal("1.25"), Decimal("1.26"), None], pa.decimal128(5, 2)),
             pa.array([2**64 - 1, 3, None], pa.uint64()),
             pa.array([-1.5, 2.0, None]),
             pa.array([b"0" * 16, b"1" * 16, None], pa.binary(16))]
    for array in typed:
        hashes = column_hashes(array)
        assert len(set(hashes.tolist())) == 3, array.type
