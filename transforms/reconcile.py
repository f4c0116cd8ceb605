"""Nothing is lost: for every source table, rows in = rows staged + rows rejected, and
events in = events heading an entry + merged into one + collapsed into a summary + left
out. The run's quality report says how much shorter the chronologies are than the
records they come from."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Protocol

import pandas as pd


class _Counted(Protocol):
    rows_staged: dict[str, int]
    events_by_table: dict[str, int]


class _Shaped(Protocol):
    events_by_table: dict[str, int]
    accounting: pd.DataFrame
    entries: dict[str, int]


class Unbalanced(RuntimeError):
    """Rows went missing or were counted twice: a fault in the pipeline, never in the data."""


def reconciliation(extracted: Mapping[str, int], outcomes: Iterable[_Counted],
                   rejects: pd.DataFrame) -> pd.DataFrame:
    """Per source table: rows extracted, staged, rejected, events out, and the balance.

    The three counts come from three places (the reader, the shards' kept rows and the
    rejects), so a row lost or duplicated on the way shows as an unbalanced table.
    """
    outcomes = list(outcomes)
    staged = _summed(o.rows_staged for o in outcomes)
    events = _summed(o.events_by_table for o in outcomes)
    rejected = rejects.groupby("table").size()
    table = pd.DataFrame({"table": sorted(extracted)})
    table["rows_in"] = table["table"].map(extracted).astype("int64")
    table["rows_staged"] = table["table"].map(staged).fillna(0).astype("int64")
    table["rows_rejected"] = table["table"].map(rejected).fillna(0).astype("int64")
    table["events"] = table["table"].map(events).fillna(0).astype("int64")
    table["balanced"] = table["rows_in"] == table["rows_staged"] + table["rows_rejected"]
    return table


def _summed(counts: Iterable[Mapping[str, int]]) -> dict[str, int]:
    """Counts by name, added up over the shards."""
    total: dict[str, int] = {}
    for shard in counts:
        for name, count in shard.items():
            total[name] = total.get(name, 0) + count
    return total


def check_balanced(table: pd.DataFrame) -> None:
    broken = table[~table["balanced"]]
    if not broken.empty:
        details = "; ".join(f"{r.table}: {r.rows_in} in, {r.rows_staged} staged, "
                            f"{r.rows_rejected} rejected" for r in broken.itertuples())
        raise Unbalanced(f"source rows do not reconcile: {details}")


def event_reconciliation(outcomes: Iterable[_Shaped]) -> tuple[pd.DataFrame, dict[str, int]]:
    """Per source table: events staged, heading an entry, merged, collapsed, left out,
    and whether they balance; with the entries' own totals.

    Three sources again: the events staged (the stage's count), the fate of each event
    (the shape's accounting) and what the written entries say they hold (merged_count).
    """
    outcomes = list(outcomes)
    columns = ["events", "entry", "merged", "collapsed", "filtered", "key_hidden"]
    parts = [o.accounting for o in outcomes if not o.accounting.empty]
    if parts:
        table = pd.concat(parts).groupby("table", as_index=False)[columns].sum()
    else:
        table = pd.DataFrame({c: pd.Series(dtype="int64") for c in ["table", *columns]})
    staged = _summed(o.events_by_table for o in outcomes)
    entries = _summed(o.entries for o in outcomes)
    table.insert(1, "staged", table["table"].map(staged).fillna(0).astype("int64"))
    table["balanced"] = (table["events"] == table["staged"]) & (
        table["events"] == table[["entry", "merged", "collapsed", "filtered"]].sum(axis=1))
    return table, entries


def check_events_balanced(table: pd.DataFrame, entries: dict[str, int]) -> None:
    """Raise Unbalanced if an event went missing or was counted twice on its way into the
    chronology, by any of the three counts."""
    problems = event_problems(table, entries)
    if problems:
        raise Unbalanced("events do not reconcile with the chronology: " + "; ".join(problems))


def event_problems(table: pd.DataFrame, entries: dict[str, int]) -> list[str]:
    """Why the events do not reconcile with the chronology (empty when they do)."""
    broken = table[~table["balanced"]]
    problems = [f"{r.table}: {r.staged} staged, {r.events} shaped = {r.entry} heading an "
                f"entry + {r.merged} merged + {r.collapsed} collapsed + {r.filtered} left out"
                for r in broken.itertuples()]
    held = int(table[["entry", "merged", "collapsed"]].to_numpy().sum())
    if entries and entries.get("events_in_entries") != held:
        problems.append(f"the entries hold {entries.get('events_in_entries')} events, "
                        f"the accounting {held}")
    if entries and entries.get("events_in_summaries") != int(table["collapsed"].sum()):
        problems.append(f"summaries hold {entries.get('events_in_summaries')} events, "
                        f"{int(table['collapsed'].sum())} were collapsed")
    return problems


# The issue's measure of a page that opens well: at most this many key entries.
KEY_ENTRIES_AT_MOST = 15


def quality_report(children: pd.DataFrame, entries: dict[str, int], table: pd.DataFrame
                   ) -> dict:
    """How much shorter the chronologies are than the records, per run.

    `raw_rows` are the source rows behind a child's events; the default view is the key
    and significant entries (what a page shows before "show routine activity").
    """
    has_rows = children[children["raw_rows"] > 0]
    share = has_rows["default_entries"] / has_rows["raw_rows"]
    return {
        "children": len(children),
        "raw_rows_per_child_median": _median(has_rows["raw_rows"]),
        "default_entries_per_child_median": _median(has_rows["default_entries"]),
        "default_view_share_of_raw_rows_median": round(float(share.median()), 4)
        if len(share) else None,
        "children_opening_with_at_most_15_key_entries": round(float(
            (children["key_entries"] <= KEY_ENTRIES_AT_MOST).mean()), 4)
        if len(children) else None,
        "entries_with_no_reason": int(entries.get("no_reason", 0)),
        "key_events_collapsed_or_left_out": int(table["key_hidden"].sum())
        if "key_hidden" in table else 0,
    }


def quality_line(quality: dict) -> str:
    """The quality report in one line, as the command line and the benchmark print it."""
    share = quality["default_view_share_of_raw_rows_median"]
    opening = quality["children_opening_with_at_most_15_key_entries"]
    return (f"quality: median child has {quality['raw_rows_per_child_median'] or 0:,.0f} source "
            f"rows and {quality['default_entries_per_child_median'] or 0:,.0f} entries in the "
            f"default view (median share {share or 0:.1%}); {opening or 0:.1%} of pages open "
            f"with at most {KEY_ENTRIES_AT_MOST} key entries; "
            f"{quality['entries_with_no_reason']} entries without a reason; "
            f"{quality['key_events_collapsed_or_left_out']} key events collapsed or left out")


def _median(values: pd.Series) -> float | None:
    return float(values.median()) if len(values) else None


def run_summary(counts: pd.DataFrame, rejects: pd.DataFrame, findings: pd.DataFrame,
                people: pd.DataFrame, children: list[str] | None, max_reject_share: float,
                whole_output: bool, events_balanced: bool = True, carried: int = 0,
                whole_source: tuple[int, int] | None = None) -> dict:
    """What a run did, for the manifest: counts, shares, status and the children found.

    `whole_output` says whether the version holds every child (a run for some children
    holds only them unless the others were carried over from the published output);
    only a whole output is published. `events_balanced` says whether the events
    reconcile with the chronology (`event_problems`): a run whose counts do not balance,
    either way, has failed. `carried` counts the children taken unchanged from the
    published output; when some were, `whole_source` gives (rows rejected in the whole
    output, source rows read), and the reject share is of those, not of the few rows of
    the children built."""
    rows_in = int(counts["rows_in"].sum())
    rejected = int(counts["rows_rejected"].sum())
    share_of = {"rows": rows_in, "rejected": rejected} if whole_source is None else \
        {"rows": whole_source[1], "rejected": whole_source[0]}
    share = share_of["rejected"] / share_of["rows"] if share_of["rows"] else 0.0
    balanced = bool(counts["balanced"].all()) and events_balanced
    found = set(people["child_id"])
    status = "succeeded" if share <= max_reject_share and balanced else "failed"
    return {
        "status": status,
        "children_requested": children,
        "children_not_found": sorted(set(children) - found) if children else [],
        "published": whole_output and status == "succeeded" and bool(found or carried),
        "rows_in": rows_in,
        "rows_rejected": rejected,
        "reject_share": round(share, 6),
        "reject_share_of": share_of,
        "max_reject_share": max_reject_share,
        "events": int(counts["events"].sum()),
        "children": len(found),
        "tables": counts.to_dict(orient="records"),
        "findings": _by_rule(findings),
        "rejects_by_rule": _by_rule(rejects),
    }


def _by_rule(frame: pd.DataFrame) -> list[dict]:
    return (frame.groupby(["table", "expectation"]).size().rename("rows").reset_index()
            .to_dict(orient="records"))


def run_record(manifest: dict) -> str:
    """The run in a few lines of Markdown, for the Prefect UI: counts and timings only,
    never a child's name or a record's text (Prefect keeps artifacts in its database)."""
    carried = (manifest.get("carried_over") or {}).get("children", 0)
    fates = pd.DataFrame(manifest["chronology"]["events"])
    filtered = int(fates["filtered"].sum()) if len(fates) else 0
    site = manifest["site"]
    lines = [
        f"# Run {manifest['run_id']}: {manifest['status']}"
        f"{'' if manifest['published'] else ' (not published)'}",
        "",
        f"Data as of {manifest['data_as_of']}; rules {manifest['rules']['hash']}.",
        "",
        "| | |", "|---|---|",
        f"| children built | {manifest['children']:,} |",
        f"| children carried over unchanged | {carried:,} |",
        *(f"| built because: {reason} | {count:,} |"
          for reason, count in manifest["rebuilt_because"].items()),
        f"| source rows read | {manifest['rows_read']:,} |",
        f"| rows of the children built | {manifest['rows_in']:,} |",
        f"| rows rejected | {manifest['rows_rejected']:,} |",
        f"| share of source rows rejected | {manifest['reject_share']:.2%} |",
        f"| events | {manifest['events']:,} |",
        f"| events left out by rule | {filtered:,} |",
        f"| chronology entries | {manifest['chronology']['entries']:,} |",
        f"| pages rendered | {site['pages']:,} |",
        "",
        "| stage | seconds |", "|---|---:|",
        *(f"| {stage} | {seconds:,.1f} |" for stage, seconds
          in manifest["timings_seconds"].items() if not stage.startswith("thread.")),
    ]
    return "\n".join(lines) + "\n"
