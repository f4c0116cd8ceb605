"""Periods a child's life is divided into, and the gaps in visits while one is open.

A period runs from a start event to its end date (open while there is none): a CIN
episode from referral to closure, a plan, a period of care (all the SSDA903 episodes
of one `clae_cla_id`), a placement, a missing episode, a legal status. Visit standards
in the rules say how often a child must be visited while a period of a kind is open;
a longer stretch with no visit recorded is a gap.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from transforms.rules import Rules

# The event that starts each kind of period (its `end_date` ends the period).
PERIOD_STARTS: dict[str, str] = {
    "cin_episode": "referral",
    "early_help": "early_help_start",
    "cin_plan": "cin_plan_start",
    "cp_plan": "cp_plan_start",
    "looked_after": "cla_episode_start",
    "placement": "placement_start",
    "missing": "missing_start",
    "legal_status": "legal_status_start",
}

PERIOD_COLUMNS: dict[str, str] = {
    "child_id": "str",
    "period_id": "str",
    "kind": "str",
    "start_date": "datetime64[ns]",
    "end_date": "datetime64[ns]",
    "is_open": "bool",
    "code": "str",
    "label": "str",
    "source": "str",
}

GAP_COLUMNS: dict[str, str] = {
    "child_id": "str",
    "rule": "str",
    "period_id": "str",
    "kind": "str",
    "start_date": "datetime64[ns]",
    "end_date": "datetime64[ns]",
    "days": "int64",
    "max_days": "int64",
    "is_open": "bool",
    "score": "int64",
}


def periods(events: pd.DataFrame, rules: Rules) -> pd.DataFrame:
    """One row per period of every child in `events`, by child and start date."""
    parts = []
    # Only start events matter, and only a few of their columns: select those once
    # rather than copy every column of the shard's events per kind.
    is_start = np.asarray(events["event_type"].isin(list(PERIOD_STARTS.values())), dtype=bool)
    candidates = events[["child_id", "event_type", "event_date", "end_date", "source_table",
                         "source_id", "episode_id", "code"]][is_start]
    for kind, start_type in PERIOD_STARTS.items():
        starts = candidates[candidates["event_type"].eq(start_type).to_numpy(dtype=bool)]
        if starts.empty:
            continue
        if kind == "looked_after":
            starts = _periods_of_care(starts)
            ident = starts["episode_id"].fillna(starts["source_id"])
        else:
            ident = starts["source_id"]
        labels = rules.event_types[start_type].codes
        parts.append(pd.DataFrame({
            "child_id": starts["child_id"].to_numpy(),
            "period_id": (kind + ":" + ident.astype("str")).to_numpy(),
            "kind": kind,
            "start_date": starts["event_date"].to_numpy(),
            "end_date": starts["end_date"].to_numpy(),
            "code": starts["code"].to_numpy(),
            "label": starts["code"].map(labels).to_numpy() if labels else None,
            "source": (starts["source_table"] + ":" + starts["source_id"]).to_numpy(),
        }))
    if not parts:
        return pd.DataFrame({c: pd.Series(dtype=t) for c, t in PERIOD_COLUMNS.items()})
    found = pd.concat(parts, ignore_index=True)
    found["is_open"] = found["end_date"].isna()
    return (found.reindex(columns=list(PERIOD_COLUMNS)).astype(PERIOD_COLUMNS)
            .sort_values(["child_id", "start_date", "kind", "period_id", "source"],
                         kind="stable", ignore_index=True))


def _periods_of_care(starts: pd.DataFrame) -> pd.DataFrame:
    """SSDA903 episodes of one period of care (`clae_cla_id`) joined into one period.

    A new episode starts whenever the legal status or placement changes (reason X1
    ends the one before), so the child's time in care is the span of all of them,
    open while any is open. The first episode gives the code (why care began).
    """
    key = starts["episode_id"].fillna(starts["source_id"]).to_numpy()
    # Ties (two episodes starting one day) broken by record, whatever the row order.
    ordered = starts.assign(_key=key).sort_values(
        ["child_id", "_key", "event_date", "source_id"], kind="stable")
    grouped = ordered.groupby(["child_id", "_key"], sort=False)
    first = grouped.head(1)
    still_open = (grouped["end_date"].count() < grouped.size()).to_numpy()
    last_end = grouped["end_date"].max().to_numpy()
    return first.assign(end_date=np.where(still_open, np.datetime64("NaT"), last_end)
                        ).drop(columns="_key").reset_index(drop=True)


def visit_gaps(periods_: pd.DataFrame, events: pd.DataFrame, rules: Rules,
               as_of: pd.Timestamp) -> pd.DataFrame:
    """Stretches longer than a visit standard allows with no visit, while a period is open.

    Counted from the period's start (or the last visit) to the next visit (or the
    period's end, or `as_of` while it is still open).
    """
    found = []
    for standard in rules.visit_gaps:
        open_ = periods_[periods_["kind"].eq(standard.period).to_numpy(dtype=bool)]
        if open_.empty:
            continue
        # Whole days throughout: a visit at 10:00 on the last day still counts.
        day = as_of.normalize()
        end = open_["end_date"].dt.normalize().fillna(day).clip(upper=day)
        # Each open period is its own span (two children's periods can share an id).
        span = pd.DataFrame({"span": np.arange(len(open_)),
                             "child_id": open_["child_id"].to_numpy(),
                             "period_id": open_["period_id"].to_numpy(),
                             "start": open_["start_date"].dt.normalize().to_numpy(),
                             "end": end.to_numpy(), "is_open": open_["is_open"].to_numpy()})
        span = span[span["start"] <= span["end"]]
        visits = events[["child_id", "event_date"]][
            np.asarray(events["event_type"].isin(standard.visits), dtype=bool)]
        visits = visits.assign(event_date=visits["event_date"].dt.normalize())
        during = span.merge(visits, on="child_id")
        during = during[(during["event_date"] >= during["start"])
                        & (during["event_date"] <= during["end"])]
        points = pd.concat([
            span[["span", "start"]].rename(columns={"start": "date"}).assign(edge=0),
            during[["span", "event_date"]].rename(columns={"event_date": "date"})
            .assign(edge=1),
            span[["span", "end"]].rename(columns={"end": "date"}).assign(edge=2),
        ], ignore_index=True).sort_values(["span", "date", "edge"], kind="stable",
                                          ignore_index=True)
        previous = points["date"].shift()
        same = points["span"].eq(points["span"].shift()).to_numpy()
        days = (points["date"] - previous).dt.days
        long = same & (days > standard.max_days).fillna(False).to_numpy(dtype=bool)
        gaps = points[long].assign(start_date=previous[long], days=days[long]).merge(
            span[["span", "period_id", "child_id", "is_open"]], on="span")
        # A gap that runs to "as of" of an open period is still going on.
        still = gaps["is_open"] & gaps["edge"].eq(2)
        found.append(pd.DataFrame({
            "child_id": gaps["child_id"], "rule": standard.id, "period_id": gaps["period_id"],
            "kind": standard.period, "start_date": gaps["start_date"],
            "end_date": gaps["date"], "days": gaps["days"], "max_days": standard.max_days,
            "is_open": still, "score": standard.score}))
    if not found:
        return pd.DataFrame({c: pd.Series(dtype=t) for c, t in GAP_COLUMNS.items()})
    return (pd.concat(found, ignore_index=True).astype(GAP_COLUMNS)
            .sort_values(["child_id", "start_date", "rule", "period_id"], ignore_index=True))
