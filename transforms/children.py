"""One row per child: the header facts a chronology page opens with, and its counts.

Current status, legal status, placement and worker are what is open on the "as of"
date; counts are of periods and events over the child's whole record; the last time the
child was seen (and seen alone) comes from visits and assessments. `raw_rows` (the
source rows behind the child's events) against `default_entries` (key and significant
entries) is how the run's quality report measures how much shorter the chronology is
than the case record.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow.compute as pc

from transforms.frames import arrow_text, lookup
from transforms.stage import source_records

CHILD_COLUMNS: dict[str, str] = {
    "child_id": "str",
    "forename": "str",
    "surname": "str",
    "birth_date": "datetime64[ns]",
    "expected_birth_date": "datetime64[ns]",
    "death_date": "datetime64[ns]",
    "sex": "str",
    "ethnicity": "str",
    "disabilities": "str",
    "nationality": "str",
    "has_ehcp": "str",
    "has_person_record": "bool",
    "uasc": "bool",
    "current_status": "str",
    "legal_status": "str",
    "placement": "str",
    "worker": "str",
    "team": "str",
    "contacts": "int32",
    "referrals": "int32",
    "s47_enquiries": "int32",
    "cp_plans": "int32",
    "periods_of_care": "int32",
    "placements": "int32",
    "missing_episodes": "int32",
    "last_seen": "datetime64[ns]",
    "last_seen_alone": "datetime64[ns]",
    "raw_rows": "int32",
    "entries": "int32",
    "default_entries": "int32",
    "key_entries": "int32",
    "content_hash": "str",
}

# Status from the open periods, most intensive first.
STATUS_ORDER: tuple[tuple[str, str], ...] = (
    ("looked_after", "looked after"),
    ("cp_plan", "child protection plan"),
    ("cin_plan", "child in need plan"),
    ("cin_episode", "open case"),
    ("early_help", "early help"),
)
SEEN_TYPES = ("cin_visit", "cp_visit", "cla_visit", "assessment_completed")
_HASHED = ["entry_id", "seq", "event_date", "end_date", "age_at_event", "event_type",
           "category", "title", "detail", "outcome", "level", "score", "merged_count"]


def children(people: pd.DataFrame, periods: pd.DataFrame, events: pd.DataFrame,
             entries: pd.DataFrame, as_of: pd.Timestamp) -> pd.DataFrame:
    """Header facts and counts of every child in `people` or `events`, by child id.

    A child can have events but no person facts, when validation rejected their person
    row (a death date before the birth date, say) but not the rest of their record: they
    keep their chronology, with `has_person_record` false and no facts, rather than
    vanish from the site."""
    # The few event types and columns the header needs, selected once.
    wanted = np.asarray(events["event_type"].isin(
        ["worker_allocated", "immigration_status_start", "care_leaver_contact", "contact",
         "referral", "s47_start", *SEEN_TYPES]), dtype=bool)
    source_rows = _source_rows(events)
    events = events[["child_id", "event_id", "event_type", "event_date", "end_date", "detail",
                     "worker", "team", "seen", "seen_alone"]][wanted]
    everyone = pd.Index(people["child_id"]).union(pd.Index(source_rows.unique()))
    frame = (people.set_index("child_id")[
        ["forename", "surname", "birth_date", "expected_birth_date", "death_date", "sex",
         "ethnicity", "disabilities", "nationality", "has_ehcp"]]
        .reindex(everyone).rename_axis("child_id").reset_index())
    ids = frame["child_id"]
    frame["has_person_record"] = ids.isin(people["child_id"]).to_numpy()
    open_now = periods[(periods["start_date"] <= as_of)
                       & (periods["end_date"].isna() | (periods["end_date"] > as_of))]
    frame["current_status"] = _status(ids, periods, open_now, events)
    frame["legal_status"] = _latest_open(ids, open_now, "legal_status")
    frame["placement"] = _latest_open(ids, open_now, "placement")
    workers = events[events["event_type"].eq("worker_allocated").to_numpy(dtype=bool)
                     & (events["end_date"].isna() | (events["end_date"] > as_of))
                     .to_numpy(dtype=bool)
                     & (events["event_date"] <= as_of).to_numpy(dtype=bool)]
    # The latest open allocation; on a tie, the last by event id, whatever the row order.
    latest = workers.sort_values(["child_id", "event_date", "event_id"], kind="stable"
                                 ).drop_duplicates("child_id", keep="last").set_index("child_id")
    frame["worker"] = lookup(ids, latest["worker"]).to_numpy()
    frame["team"] = lookup(ids, latest["team"]).to_numpy()
    immigration = events[events["event_type"].eq("immigration_status_start").to_numpy(bool)]
    uasc = immigration.loc[immigration["detail"].str.contains(
        "UASC|unaccompanied", case=False, regex=True).fillna(False).to_numpy(bool), "child_id"]
    frame["uasc"] = ids.isin(uasc).to_numpy()

    counted = {"contacts": ("event", "contact"), "referrals": ("event", "referral"),
               "s47_enquiries": ("event", "s47_start"), "cp_plans": ("period", "cp_plan"),
               "periods_of_care": ("period", "looked_after"),
               "placements": ("period", "placement"), "missing_episodes": ("period", "missing")}
    for column, (source, name) in counted.items():
        if source == "event":
            found = events.loc[events["event_type"].eq(name).to_numpy(bool), "child_id"]
        else:
            found = periods.loc[periods["kind"].eq(name).to_numpy(bool), "child_id"]
        frame[column] = count_by(ids, found)

    seen = events[events["event_type"].isin(SEEN_TYPES).to_numpy(bool)
                  & events["seen"].eq("Y").fillna(False).to_numpy(bool)]
    frame["last_seen"] = _latest(ids, seen)
    alone = seen[seen["seen_alone"].eq("Y").fillna(False).to_numpy(bool)]
    frame["last_seen_alone"] = _latest(ids, alone)

    frame["raw_rows"] = count_by(ids, source_rows)
    frame["entries"] = count_by(ids, entries["child_id"])
    shown = entries["level"].isin(["key", "significant"]).to_numpy(bool)
    frame["default_entries"] = count_by(ids, entries.loc[shown, "child_id"])
    frame["key_entries"] = count_by(ids, entries.loc[entries["level"].eq("key").to_numpy(bool),
                                                   "child_id"])
    frame["content_hash"] = _content_hash(ids, entries)
    return frame.astype(CHILD_COLUMNS).sort_values("child_id", ignore_index=True)


def _source_rows(events: pd.DataFrame) -> pd.Series:
    """The child of each distinct source row behind the events (one row can give two)."""
    first = ~pd.Series(source_records(events)).duplicated().to_numpy()
    return events["child_id"][first]


def count_by(ids: pd.Series, found: pd.Series) -> np.ndarray:
    """How many of `found` (child ids) each of `ids` is."""
    counts = found.value_counts()
    return lookup(ids, counts.astype("float64")).fillna(0).to_numpy().astype(np.int32)


def _latest(ids: pd.Series, events: pd.DataFrame) -> np.ndarray:
    return lookup(ids, events.groupby("child_id")["event_date"].max()).to_numpy()


def _status(ids: pd.Series, periods: pd.DataFrame, open_now: pd.DataFrame,
            events: pd.DataFrame) -> np.ndarray:
    """The most intensive open period's status; else care leaver, closed or not open."""
    words = [w for _, w in STATUS_ORDER] + ["care leaver", "closed",
                                            "not open to children's social care"]
    status = np.full(len(ids), len(words) - 1)
    holders = [open_now.loc[open_now["kind"].eq(kind).to_numpy(bool), "child_id"]
               for kind, _ in STATUS_ORDER]
    holders.append(events.loc[events["event_type"].eq("care_leaver_contact").to_numpy(bool),
                              "child_id"])
    holders.append(periods.loc[periods["kind"].eq("cin_episode").to_numpy(bool), "child_id"])
    # From the least to the most intensive, so the most intensive status wins.
    for position in reversed(range(len(holders))):
        has = np.asarray(pc.is_in(arrow_text(ids), value_set=pc.unique(
            arrow_text(holders[position]))), dtype=bool)
        status = np.where(has, position, status)
    return np.array(words, dtype=object)[status]


def _latest_open(ids: pd.Series, open_now: pd.DataFrame, kind: str) -> np.ndarray:
    """The latest open period of a kind, as "C2 (full care order)"."""
    found = open_now[open_now["kind"].eq(kind).to_numpy(bool)].sort_values(
        ["child_id", "start_date", "period_id"], kind="stable").drop_duplicates(
        "child_id", keep="last")
    words = found["label"].fillna(found["code"])
    text = (found["code"] + " " + "(" + words + ")").where(words != found["code"], found["code"])
    return lookup(ids, pd.Series(text.to_numpy(), index=found["child_id"].to_numpy(),
                                 dtype="str")).to_numpy()


def _content_hash(ids: pd.Series, entries: pd.DataFrame) -> np.ndarray:
    """A hash of the child's entries as a page shows them (their dates, words, levels and
    counts; reasons follow from the rules, whose hash the manifest records)."""
    if entries.empty:
        return pd.Series(pd.NA, index=ids.index, dtype="str").to_numpy()
    row_hash = pd.util.hash_pandas_object(entries[_HASHED], index=False).to_numpy()
    # Rows are hashed with their seq, so a sum per child is order-sensitive enough.
    total = pd.Series(row_hash).groupby(entries["child_id"].to_numpy()).sum()
    hexed = pd.Series([f"{int(v):016x}" for v in total.to_numpy()], index=total.index,
                      dtype="str")
    return lookup(ids, hexed).to_numpy()
