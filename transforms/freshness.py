"""How long a child's outputs stay right while their records do not change.

A child's chronology depends on the "as of" date as well as on their records: their age
in the header, what is open now, gaps in visits to an open plan, which entries are old
enough to be history, and which records are still in the future. `stale_on` is the
first "as of" date on which the outputs built now could differ from a fresh build of
the same records. A nightly run reuses a child's outputs only before that date (see
`flows/incremental.py`); the date errs early, never late.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from transforms.rules import Rules

DAY = pd.Timedelta(days=1)
# The `stale_on` of outputs that time alone never changes.
NEVER = pd.Timestamp.max.normalize()


def stale_on(children: pd.DataFrame, periods: pd.DataFrame, events: pd.DataFrame,
             entries: pd.DataFrame, rules: Rules, as_of: pd.Timestamp) -> pd.Series:
    """By child id (the children of `children`, one row each): the first "as of" date
    after `as_of` on which their outputs, made from these `periods`, `events` and
    chronology `entries`, may change with no change to their records."""
    day = as_of.normalize()
    tomorrow = np.datetime64(day + DAY, "ns")
    ids = pd.Index(children["child_id"].astype("str"))
    soonest = np.full(len(ids), np.datetime64(NEVER, "ns"))
    # Each row's child as its position in `ids` (-1: none of them), found once per frame:
    # a million rows' ids grouped as text, for each date column, cost seconds a shard.
    at = {name: ids.get_indexer(frame["child_id"].astype("str"))
          for name, frame in (("children", children), ("periods", periods),
                              ("events", events), ("entries", entries))}

    def earliest(frame: str, when: pd.Series | np.ndarray) -> None:
        when = np.asarray(when, dtype="datetime64[ns]")
        rows = (at[frame] >= 0) & ~np.isnat(when)
        if rows.any():
            first = pd.Series(when[rows]).groupby(at[frame][rows]).min()
            child = first.index.to_numpy()
            soonest[child] = np.minimum(soonest[child],
                                        np.maximum(first.to_numpy(), tomorrow))

    # Anything open or in the future: durations "so far", visit gaps and current status
    # move every day.
    for name, frame, start, end in (("periods", periods, "start_date", "end_date"),
                                    ("events", events, "event_date", "end_date")):
        live = ((frame[start] > day) | (frame[end] > day)).fillna(False).to_numpy(bool)
        if frame is periods:
            live = live | (frame[end].isna() & frame[start].notna()).to_numpy(bool)
        earliest(name, np.where(live, tomorrow, np.datetime64("NaT", "ns")))
    # The header's age: in days, then weeks, for a newborn; in months to 5; then years.
    born = children["birth_date"].fillna(children["expected_birth_date"])
    earliest("children", _next_age_change(born, day))
    # Entries leave the recent history when they are `history_years` old.
    years = rules.collapse.history_years
    if years:
        for name, frame, column in (("events", events, "event_date"),
                                    ("events", events, "end_date"),
                                    ("entries", entries, "event_date"),
                                    ("entries", entries, "end_date"),
                                    ("periods", periods, "start_date"),
                                    ("periods", periods, "end_date")):
            # A day early: the cut-off is a calendar offset, and early is safe.
            crossing = frame[column].dt.normalize() + pd.DateOffset(years=years) - DAY
            earliest(name, crossing.where(crossing > day))
    return pd.Series(soonest, index=ids, dtype="datetime64[ns]")


def _next_age_change(born: pd.Series, day: pd.Timestamp) -> pd.Series:
    born = born.dt.normalize()
    tomorrow = day + DAY
    months = ((day.year - born.dt.year) * 12 + (day.month - born.dt.month)
              - (day.day < born.dt.day)).astype("float64")
    years = months // 12
    next_month = _add_months(born, months + 1)
    next_year = _add_months(born, (years + 1) * 12)
    when = pd.Series(tomorrow, index=born.index, dtype="datetime64[ns]")
    when = when.where(~((months >= 3) & (years < 5)).fillna(False), next_month)
    when = when.where(~(years >= 5).fillna(False), next_year)
    return when.where(born.notna())


def _add_months(born: pd.Series, months: pd.Series) -> pd.Series:
    """`born` plus `months` calendar months (clipped to the month's end, so early)."""
    start = born.dt.to_period("M")
    month_start = (start + months.fillna(0).astype("int64")).dt.to_timestamp()
    last_day = month_start + pd.offsets.MonthEnd(0)
    day = np.minimum(born.dt.day.fillna(1).astype("int64"), last_day.dt.day)
    return (month_start + pd.to_timedelta(day - 1, unit="D")).where(born.notna())
