"""Shape: turn a shard's scored events into coherent chronologies, one per child.

The steps, each driven by the rules file:
1. leave out events scored below `context` (counted, with their type's reason);
2. order each child's events by day, process order (the order of `event_types` in the
   rules), time and event id;
3. merge the same happening recorded by several sources into one entry, headed by its
   highest-scoring event and listing every source: same-day groups, `joins` (the steps
   of one process, wherever their dates fall) and `join_same_day` (a note or contact
   joining its day's best entry);
4. collapse runs of routine entries, and older significant history, into counted
   summary entries;
5. add gap entries where no visit was recorded for longer than a visit standard allows;
6. number each child's entries `seq` 1..n in display order, with the age at each.

Everything is column arithmetic over the whole shard: no Python loop runs per child or
per event. Every kept event ends up in exactly one entry (`event_ids`), so the
manifest can check that events in = events in entries + events left out.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from transforms.frames import arrow_text, lookup, per_distinct
from transforms.periods import visit_gaps
from transforms.rules import Rules
from transforms.score import FILTERED, escalation_reasons, levels_of, reason_lists, type_codes
from transforms.stage import LASTING_EVENT_TYPES, source_records
from transforms.words import long_date, plural

SUMMARY_TYPE = "summary"
GAP_TYPE = "visit_gap"
SUMMARY_CATEGORY = "routine activity"
GAP_CATEGORY = "visits"
COLLAPSE_REASON = ("collapse: Routine activity between significant events, counted in one "
                   "entry; expand it to see each one")
HISTORY_REASON = ("history: Earlier history, summarised as the rules' history_years asks; "
                  "expand it to see each entry")
_LIST = pd.ArrowDtype(pa.list_(pa.string()))

ENTRY_COLUMNS: dict[str, object] = {
    "child_id": "str",
    "entry_id": "str",
    "seq": "int32",
    "event_date": "datetime64[ns]",
    "end_date": "datetime64[ns]",
    "age_at_event": "str",
    "age_days": "Int64",
    "event_type": "str",
    "category": "str",
    "title": "str",
    "detail": "str",
    "outcome": "str",
    "score": "int16",
    "level": "str",
    "reasons": _LIST,
    "sources": _LIST,
    "event_ids": _LIST,
    "merged_count": "int32",
    "is_summary": "bool",
    "is_gap": "bool",
    "first_seen_run": "str",
}


@dataclass
class Shaped:
    """A shard's chronology entries and what became of every event."""

    entries: pd.DataFrame
    # One row per source table: events in, heading an entry, merged into one, collapsed
    # into a summary, left out; and key events collapsed or left out (always 0).
    accounting: pd.DataFrame
    # One row per event type left out: how many and the rule's reason.
    filtered: pd.DataFrame


def chronology(scored: pd.DataFrame, periods_: pd.DataFrame, births: pd.Series,
               rules: Rules, as_of: pd.Timestamp, run_id: str,
               first_seen: pd.Series | None = None) -> Shaped:
    """Entries of every child in `scored` (the output of `score.scored_events`).

    `births` gives each child's birth (or expected birth) date, for ages; `first_seen`
    the run that first showed each entry id (from the previous output), if any.
    """
    left_out = np.asarray(scored["level"] == FILTERED, dtype=bool)
    if left_out.all():  # nothing to show (an empty shard, or only events left out)
        return Shaped(entries=_empty_entries(), filtered=_filtered(scored[left_out], rules),
                      accounting=_accounting(scored, {"rows": np.array([], dtype=np.int64)},
                                             np.array([], dtype=np.int64),
                                             np.array([], dtype=bool),
                                             np.array([], dtype=np.int64)))
    children = _ChildRank(scored["child_id"])
    events = _canonical(scored, np.flatnonzero(~left_out), rules, children)
    entry = _merged(scored, events, rules)
    entries = _entries(events, entry, _raising(rules))
    entries["collapsible"] = _collapsible(scored, events, entries, rules, as_of)
    run = _runs(entries, rules.collapse.min_run)
    summaries = _summaries(scored, events, entry, entries, run, rules)
    shown = _shown(scored, events, entries, run, rules)
    gaps = _gaps(visit_gaps(periods_, scored, rules, as_of), rules, children, as_of)
    n_summaries = len(summaries)
    shown["_key"] = np.flatnonzero(run < 0)
    if n_summaries:
        summaries["_key"] = len(entries["lead"]) + np.arange(n_summaries)
    if not gaps.empty:
        gaps["_key"] = len(entries["lead"]) + n_summaries + np.arange(len(gaps))
    table = pd.concat([shown, summaries, gaps], ignore_index=True)
    # Display order: child, day, process order; gaps after the day's entries; ties by the
    # canonical position of the heading event (so the same input gives the same order).
    order = np.lexsort((table["_position"].to_numpy(), table["_process"].to_numpy(),
                        table["_day"].to_numpy(), table["_child"].to_numpy()))
    table = table.iloc[order].reset_index(drop=True)
    child = table["_child"].to_numpy()
    starts = np.r_[0, np.flatnonzero(child[1:] != child[:-1]) + 1] if len(table) else []
    first_of_child = np.repeat(starts, np.diff(np.r_[starts, len(table)]))
    table["seq"] = (np.arange(len(table)) - first_of_child + 1).astype("int32")

    # Where each kept event went: the final row of its entry, or of its summary.
    final_row = np.full(len(entries["lead"]) + n_summaries + len(gaps), -1, dtype=np.int64)
    final_row[table["_key"].to_numpy()] = np.arange(len(table))
    event_entry = np.where(run[entry] >= 0, len(entries["lead"]) + run[entry], entry)
    is_lead = np.zeros(len(entry), dtype=bool)
    is_lead[entries["lead"]] = True
    # A summary lists what it counts in time order; an entry lists its head first.
    table["event_ids"], table["sources"] = _event_lists(scored, events["rows"],
                                                        final_row[event_entry],
                                                        is_lead & (run[entry] < 0), len(table))
    table["age_days"], table["age_at_event"] = ages(table, births)
    first = (pd.Series(pd.NA, index=table.index, dtype="str") if first_seen is None
             else pd.Series(table["entry_id"].map(first_seen), dtype="str"))
    table["first_seen_run"] = first.fillna(run_id)
    result = pd.DataFrame({name: table[name] for name in ENTRY_COLUMNS})
    return Shaped(entries=result.astype({k: v for k, v in ENTRY_COLUMNS.items()
                                         if k not in ("reasons", "sources", "event_ids")}),
                  accounting=_accounting(scored, events, entry, is_lead, run),
                  filtered=_filtered(scored[left_out], rules))


def _empty_entries() -> pd.DataFrame:
    return pd.DataFrame({name: pd.Series(dtype=dtype) for name, dtype in ENTRY_COLUMNS.items()})


# ----------------------------------------------------------------------- ordering

class _ChildRank:
    """Each child id's rank among the shard's ids in sorted order: an integer sort key."""

    def __init__(self, child_ids: pd.Series) -> None:
        distinct = pc.unique(arrow_text(child_ids))
        self.ids = distinct.take(pc.sort_indices(distinct))

    def codes(self, child_ids: pd.Series) -> np.ndarray:
        found = pc.index_in(arrow_text(child_ids), value_set=self.ids)
        return np.asarray(found.to_numpy(zero_copy_only=False), dtype=np.int64)


def _canonical(scored: pd.DataFrame, kept: np.ndarray, rules: Rules,
               children: _ChildRank) -> dict[str, np.ndarray]:
    """The kept events' sort keys, in canonical order: by child, day, process order,
    time and event id. `rows` gives each one's position in `scored`.

    Only integer arrays move from here on; text is taken for the few rows that need it.
    """
    process = type_codes(scored["event_type"], list(rules.event_types))[kept]
    child = children.codes(scored["child_id"])[kept]
    when = scored["event_date"].to_numpy().astype("datetime64[ns]")[kept]
    day = when.astype("datetime64[D]").astype(np.int64)
    seconds = (when - when.astype("datetime64[D]")).astype("timedelta64[s]").astype(np.int64)
    # One 63-bit key (child 23 bits, day 17, process 6, second of the day 17) sorts in
    # one pass; event ids only break the ties that are left (notes of the same day).
    first_day = day.min() if len(day) else 0
    key = ((child << 40) | ((day - first_day) << 23) | (process << 17) | seconds)
    order = np.argsort(key, kind="stable")
    order = _ties_by_event_id(order, key, scored["event_id"], kept)
    score = scored["score"].to_numpy()[kept]
    fired = scored["fired"].to_numpy().astype(np.uint64)[kept]
    joins = [list(rules.event_types).index(t) for t in rules.merge.join_same_day]
    return {"rows": kept[order], "child": child[order], "day": day[order],
            "process": process[order], "score": score[order], "fired": fired[order],
            # A note or contact that an escalation raised keeps its own entry: its text
            # is what the reason points at.
            "joins": np.isin(process[order], joins)
            & ((fired[order] & _raising(rules)) == 0)}


def _ties_by_event_id(order: np.ndarray, key: np.ndarray, event_ids: pd.Series,
                      kept: np.ndarray) -> np.ndarray:
    """`order` with each run of equal keys sorted by event id, so that the order does
    not depend on the order the source rows came in."""
    sorted_key = key[order]
    tied = np.r_[False, sorted_key[1:] == sorted_key[:-1]]
    tied |= np.r_[tied[1:], False]
    positions = np.flatnonzero(tied)
    if len(positions) == 0:
        return order
    group = np.cumsum(np.r_[True, ~(sorted_key[positions][1:] == sorted_key[positions][:-1])])
    ids = arrow_text(event_ids).take(pa.array(kept[order[positions]]))
    rank = np.empty(len(positions), dtype=np.int64)
    rank[np.asarray(pc.sort_indices(ids))] = np.arange(len(positions))
    within = np.lexsort((rank, group))
    order = order.copy()
    order[positions] = order[positions][within]
    return order


def _merged(scored: pd.DataFrame, events: dict[str, np.ndarray], rules: Rules) -> np.ndarray:
    """The entry each kept event belongs to."""
    n = len(events["rows"])
    group_of = np.full(len(rules.event_types), -1, dtype=np.int64)
    for number, group in enumerate(rules.merge.groups):
        group_of[[list(rules.event_types).index(t) for t in group]] = number
    group = group_of[events["process"]]
    day = events["day"]
    day_key = events["child"] * 1_000_000 + (day - day.min() if n else day)
    # Two records of one type on one day (two missing episodes, two reviews) are two
    # happenings: the n-th event of each type joins the n-th of the others. Events of
    # one (child, day, type) are next to each other in canonical order.
    same_kind = day_key * 64 + events["process"]
    starts = np.r_[True, same_kind[1:] != same_kind[:-1]] if n else np.array([], dtype=bool)
    run_start = np.maximum.accumulate(np.where(starts, np.arange(n), 0)) if n else starts
    occurrence = np.minimum(np.arange(n) - run_start, 63)
    key = np.where(group >= 0, (day_key * 64 + group) * 64 + occurrence, -1 - np.arange(n))
    if rules.merge.joins:
        key = _joins(scored, events, key, rules)
    entry = pd.factorize(key)[0]
    if rules.merge.join_same_day and n:
        entry = pd.factorize(_join_same_day(events, entry, day_key))[0]
    return entry


def _joins(scored: pd.DataFrame, events: dict[str, np.ndarray], key: np.ndarray,
           rules: Rules) -> np.ndarray:
    """Apply the `joins` rules: an event joins the entry of the event of its record (or
    episode) it names, and takes its same-day group with it (an assessment's factors go
    with the assessment). Repeated until nothing changes, so chains resolve (an
    assessment's start joins its completion, which joins the referral)."""
    names = list(rules.event_types)
    process = events["process"]
    types = {names.index(t) for j in rules.merge.joins for t in (j.event_type, j.joins)}
    involved = np.flatnonzero(np.isin(process, list(types)))
    if len(involved) == 0:
        return key
    at = pa.array(events["rows"][involved])
    record = _value_codes(pc.binary_join_element_wise(
        arrow_text(scored["source_table"]).take(at), arrow_text(scored["source_id"]).take(at),
        pa.scalar(":", pa.large_string())))
    # An episode is the child's: a row that names another child's referral (the sources
    # only check that the referral exists) must not join that child's entry.
    episode_of_any = _value_codes(arrow_text(scored["episode_id"]).take(at))
    episode = np.where(episode_of_any >= 0, pd.factorize(
        events["child"][involved] * (episode_of_any.max() + 1) + episode_of_any)[0], -1)
    day = events["day"][involved]
    kind = process[involved]
    key = key.copy()
    # Only events in a same-day group (key >= 0) or in a join can move; the rest (most
    # case notes) keep their own entry, so the work is done on the movable ones only.
    can_move = key >= 0
    can_move[involved] = True
    movable = np.flatnonzero(can_move)
    for _ in range(len(rules.merge.joins) + 1):
        # What each entry would score now: a group joins only an entry scoring as much.
        codes, _ = pd.factorize(key[movable])
        top = pd.Series(events["score"][movable]).groupby(codes).max().to_numpy()
        best = np.zeros(len(key), dtype=np.int64)
        best[movable] = top[codes]
        old_keys, new_keys = [], []
        for join in rules.merge.joins:
            ident = record if join.same == "record" else episode
            anchor = np.flatnonzero((kind == names.index(join.joins)) & (ident >= 0))
            follower = np.flatnonzero((kind == names.index(join.event_type)) & (ident >= 0))
            if len(anchor) == 0 or len(follower) == 0:
                continue
            # The first anchor of each record or episode, in canonical order.
            anchor = anchor[~pd.Index(ident[anchor]).duplicated(keep="first")]
            found = pd.Index(ident[anchor]).get_indexer(ident[follower])
            ok = found >= 0
            target = involved[anchor[np.maximum(found, 0)]]
            moving = involved[follower]
            # An event never disappears into an entry that matters less than it does.
            ok &= best[moving] <= best[target]
            ok &= key[moving] != key[target]
            if join.within_days is not None:
                ok &= np.abs(day[follower] - day[anchor[np.maximum(found, 0)]]) \
                    <= join.within_days
            old_keys.append(key[moving[ok]])
            new_keys.append(key[target[ok]])
        old = np.concatenate(old_keys) if old_keys else np.array([], dtype=np.int64)
        if len(old) == 0:
            break
        new = np.concatenate(new_keys)
        unique_old, first_at = np.unique(old, return_index=True)
        where = pd.Index(unique_old).get_indexer(key[movable])
        key[movable] = np.where(where >= 0, new[first_at][np.maximum(where, 0)], key[movable])
    return key


def _value_codes(values: pa.Array) -> np.ndarray:
    """An integer per distinct value (-1 where missing)."""
    indices = pc.dictionary_encode(values).indices.fill_null(-1)
    return np.asarray(indices.to_numpy(zero_copy_only=False), dtype=np.int64)


def _join_same_day(events: dict[str, np.ndarray], entry: np.ndarray,
                   day_key: np.ndarray) -> np.ndarray:
    """Events that join (case notes, allocations) join the best entry of their day made of
    other events, if it scores at least as much."""
    score, joining = events["score"], events["joins"]
    others = np.flatnonzero(~joining)
    # Best entry of each day: highest score, then the first in canonical order.
    best = others[np.lexsort((entry[others], -score[others].astype(np.int64),
                              day_key[others]))]
    first = np.r_[True, day_key[best][1:] != day_key[best][:-1]] if len(best) else best
    best = best[first.astype(bool)] if len(best) else best
    best_day = day_key[best]
    joiners = np.flatnonzero(joining)
    at = np.searchsorted(best_day, day_key[joiners])
    at_safe = np.minimum(at, max(len(best) - 1, 0))
    found = (at < len(best)) & (best_day[at_safe] == day_key[joiners]) if len(best) else \
        np.zeros(len(joiners), dtype=bool)
    target = best[at_safe] if len(best) else joiners
    joins = found & (score[target] >= score[joiners])
    joined = entry.copy()
    joined[joiners[joins]] = entry[target[joins]]
    return joined


# ----------------------------------------------------------------------- entries

def _raising(rules: Rules) -> np.uint64:
    """The mask of escalations that raise a score: only those speak for an entry's other
    events (one that lowers a score explains only the event it applies to)."""
    mask = 0
    for bit, escalation in enumerate(rules.escalations):
        if escalation.points > 0:
            mask |= 1 << bit
    return np.uint64(mask)


def _entries(events: dict[str, np.ndarray], entry: np.ndarray, raising: np.uint64
             ) -> dict[str, np.ndarray]:
    """Entries, renumbered into display order (`entry` is updated in place).

    Each is headed by its highest-scoring event (the first in canonical order on a tie);
    it shows at its head's place. `members` lists each entry's events, head first.
    """
    n = len(entry)
    if n == 0:
        empty = np.array([], dtype=np.int64)
        return {"lead": empty, "members": empty, "starts": empty, "count": empty,
                "fired": empty.astype(np.uint64), "lead_fired": empty.astype(np.uint64),
                "score": empty, "child": empty, "day": empty, "process": empty}
    by_entry = np.lexsort((np.arange(n), -events["score"].astype(np.int64), entry))
    starts = np.r_[0, np.flatnonzero(np.diff(entry[by_entry])) + 1]
    lead = by_entry[starts]
    # Display order is the heads' canonical order; renumber entries to match it.
    display = np.argsort(lead, kind="stable")
    rank = np.empty(len(lead), dtype=np.int64)
    rank[display] = np.arange(len(lead))
    entry[:] = rank[entry]
    by_entry = np.lexsort((np.arange(n), -events["score"].astype(np.int64), entry))
    starts = np.r_[0, np.flatnonzero(np.diff(entry[by_entry])) + 1]
    lead = by_entry[starts]
    return {"lead": lead, "members": by_entry, "starts": starts,
            "count": np.diff(np.r_[starts, n]),
            "fired": np.bitwise_or.reduceat(events["fired"][by_entry] & raising, starts)
            | events["fired"][lead],
            "lead_fired": events["fired"][lead],
            "score": events["score"][lead], "child": events["child"][lead],
            "day": events["day"][lead], "process": events["process"][lead]}


def _first_with(values: pd.Series, events: dict[str, np.ndarray],
                entries: dict[str, np.ndarray], which: np.ndarray) -> np.ndarray:
    """For the entries `which`, the canonical index of the first member (head first)
    whose value is present; -1 where none is."""
    present = np.asarray(values.notna(), dtype=bool)[events["rows"]][entries["members"]]
    candidate = np.where(present, np.arange(len(present)), len(present))
    first = np.minimum.reduceat(candidate, entries["starts"])[which]
    found = first < len(present)
    return np.where(found, entries["members"][np.minimum(first, len(present) - 1)], -1)


def _last_with(values: pd.Series, events: dict[str, np.ndarray],
               entries: dict[str, np.ndarray], which: np.ndarray) -> np.ndarray:
    """For the entries `which`, the canonical index of the latest member whose value is
    present (the outcome of a process is its last recorded one); -1 where none is."""
    members = entries["members"]
    present = np.asarray(values.notna(), dtype=bool)[events["rows"]][members]
    last = np.maximum.reduceat(np.where(present, members, -1), entries["starts"])
    return last[which]


def _shown(scored: pd.DataFrame, events: dict[str, np.ndarray],
           entries: dict[str, np.ndarray], run: np.ndarray, rules: Rules) -> pd.DataFrame:
    """The entries that stay on their own (not collapsed), with their text."""
    which = np.flatnonzero(run < 0)
    lead = entries["lead"][which]
    heads = scored[["child_id", "event_id", "event_date", "end_date", "event_type"]].iloc[
        events["rows"][lead]]
    event_type = heads["event_type"].astype("str")
    types = rules.event_types
    outcome_at = _last_with(scored["outcome"], events, entries, which)
    detail_source = scored["code"].notna() | scored["detail"].notna() | scored["text"].notna()
    detail_at = _first_with(detail_source, events, entries, which)
    score = entries["score"][which].astype(np.int16)
    return pd.DataFrame({
        "child_id": heads["child_id"].to_numpy(),
        "entry_id": heads["event_id"].to_numpy(),
        "event_date": heads["event_date"].to_numpy(),
        "end_date": heads["end_date"].to_numpy(),
        "event_type": event_type.to_numpy(),
        "category": event_type.map({k: v.category for k, v in types.items()}).to_numpy(),
        "title": _titles(event_type, entries["lead_fired"][which], rules),
        "detail": _details(scored, events["rows"], detail_at, rules).to_numpy(),
        "outcome": _taken(scored["outcome"], events["rows"], outcome_at).to_numpy(),
        "score": score,
        "level": np.asarray(levels_of(score, rules).astype(str)),
        "reasons": pd.Series(pd.arrays.ArrowExtensionArray(
            reason_lists(event_type, entries["fired"][which], rules))),
        "merged_count": entries["count"][which],
        "is_summary": False,
        "is_gap": False,
        "_child": entries["child"][which],
        "_day": entries["day"][which],
        "_process": entries["process"][which],
        "_position": lead,
    })


def _titles(event_type: pd.Series, lead_fired: np.ndarray, rules: Rules) -> np.ndarray:
    """The type's title, or the title of the first escalation with one that applied to
    the heading event ("Became looked after" rather than "New care episode")."""
    titles = event_type.map({k: v.title for k, v in rules.event_types.items()}).to_numpy(
        dtype=object)
    for bit, escalation in reversed(list(enumerate(rules.escalations))):
        if escalation.title:
            applies = (lead_fired >> np.uint64(bit)) & np.uint64(1) == 1
            titles = np.where(applies, escalation.title, titles)
    return titles


def _taken(column: pd.Series, rows: np.ndarray, at: np.ndarray) -> pd.Series:
    """column at the scored positions of canonical indices `at` (missing where -1)."""
    positions = np.where(at >= 0, rows[np.maximum(at, 0)], -1)
    taken = pd.api.extensions.take(column.array, positions, allow_fill=True)
    return pd.Series(taken, dtype=column.dtype)


def event_details(events: pd.DataFrame, rules: Rules) -> pd.Series:
    """What each event adds to its title, as its entry would show it."""
    return _details_of(events["event_type"], events["code"], events["detail"], events["text"],
                       rules)


def _details(scored: pd.DataFrame, rows: np.ndarray, at: np.ndarray, rules: Rules
             ) -> pd.Series:
    """`_details_of` the events at canonical indices `at`."""
    return _details_of(*(_taken(scored[column], rows, at)
                         for column in ("event_type", "code", "detail", "text")), rules)


def _details_of(event_type: pd.Series, code: pd.Series, detail: pd.Series, text: pd.Series,
                rules: Rules) -> pd.Series:
    """What an event adds to its title: the code's words (or the code), then the detail;
    for a case note, its type and text."""
    event_type = event_type.astype("str").reset_index(drop=True)
    key = event_type + "|" + code.astype("str").reset_index(drop=True).fillna("")
    labels = {f"{t}|{c}": words for t, spec in rules.event_types.items()
              for c, words in spec.codes.items()}

    def words(keys: pd.Series) -> pd.Series:
        return keys.map(lambda k: labels.get(k) or k.split("|", 1)[1].replace(",", ", ")
                        or None).astype("str")

    code_words = per_distinct(key, words)
    note = event_type.eq("case_note").fillna(False)
    detail = detail.astype("str").reset_index(drop=True).where(
        ~note, text.astype("str").reset_index(drop=True))
    both = code_words.notna() & detail.notna()
    return code_words.where(~both, code_words + "; " + detail).fillna(detail).astype("str")


# ----------------------------------------------------------------------- collapsing

def _collapsible(scored: pd.DataFrame, events: dict[str, np.ndarray],
                 entries: dict[str, np.ndarray], rules: Rules, as_of: pd.Timestamp
                 ) -> np.ndarray:
    """Entries that may be counted in a summary: routine ones, and significant ones over
    (ended, or dated, if they do not last) more than the rules' `history_years` before
    "as of". Key entries never are."""
    score = entries["score"]
    collapsible = score < rules.levels.significant
    if rules.collapse.history_years is not None:
        cutoff = as_of.normalize() - pd.DateOffset(years=rules.collapse.history_years)
        rows = events["rows"][entries["lead"]]
        start = scored["event_date"].to_numpy()[rows].astype("datetime64[D]")
        end = scored["end_date"].to_numpy()[rows].astype("datetime64[D]")
        names = list(rules.event_types)
        lasting = np.isin(entries["process"], [names.index(t) for t in LASTING_EVENT_TYPES])
        # Something that lasts and has not ended (an open case, the current home) is
        # never history; an event that does not last is over on its day.
        over = np.where(np.isnat(end), np.where(lasting, np.datetime64("NaT"), start),
                        np.maximum(start, end))
        old = over < np.datetime64(cutoff.date(), "D")
        collapsible |= old & (score < rules.levels.key)
    return collapsible


def _runs(entries: dict[str, np.ndarray], min_run: int) -> np.ndarray:
    """For each entry (in display order), the summary it collapses into (0..), or -1:
    runs of at least `min_run` collapsible entries of one child."""
    collapsible = entries["collapsible"]
    if len(collapsible) == 0:
        return np.array([], dtype=np.int64)
    child = entries["child"]
    new_child = np.r_[True, child[1:] != child[:-1]]
    starts_run = collapsible & (new_child | np.r_[True, ~collapsible[:-1]])
    run = np.where(collapsible, np.cumsum(starts_run) - 1, -1)
    size = np.bincount(run[collapsible], minlength=1)
    collapsed = collapsible & (size[np.maximum(run, 0)] >= min_run)
    numbered = np.full(len(collapsible), -1, dtype=np.int64)
    numbered[collapsed] = pd.factorize(run[collapsed])[0]
    return numbered


def _summaries(scored: pd.DataFrame, events: dict[str, np.ndarray], entry: np.ndarray,
               entries: dict[str, np.ndarray], run: np.ndarray, rules: Rules
               ) -> pd.DataFrame:
    """One entry per collapsed run: "9 child protection visits, 2 case notes, 1 Mar – 30
    Jun 2024", with how often a visited child was seen and seen alone."""
    n = int(run.max()) + 1 if len(run) and run.max() >= 0 else 0
    if n == 0:
        return pd.DataFrame()
    first_entry = np.flatnonzero(np.r_[True, run[1:] != run[:-1]] & (run >= 0))
    first_lead = entries["lead"][first_entry]
    heads = scored[["child_id", "event_id", "event_date"]].iloc[events["rows"][first_lead]]
    event_run = run[entry]
    in_run = np.flatnonzero(event_run >= 0)
    events_run = event_run[in_run]
    dates = scored["event_date"].to_numpy()[events["rows"][in_run]]
    last_date = pd.Series(dates).groupby(events_run).max().to_numpy()
    count = np.bincount(events_run, minlength=n)
    top = pd.Series(events["score"][in_run]).groupby(events_run).max().to_numpy()

    names = list(rules.event_types)
    pair = events_run * len(names) + events["process"][in_run]
    pairs, pair_index, pair_count = np.unique(pair, return_inverse=True, return_counts=True)
    pair_run, pair_type = pairs // len(names), pairs % len(names)
    pair_score = np.zeros(len(pairs), dtype=np.int64)
    np.maximum.at(pair_score, pair_index.ravel(), events["score"][in_run].astype(np.int64))
    # Within a summary, the kinds that matter most first (the highest score among their
    # events), then the commonest, then in process order.
    order = np.lexsort((pair_type, -pair_count, -pair_score, pair_run))
    pair_run, pair_type, pair_count = pair_run[order], pair_type[order], pair_count[order]
    # "9 child protection visits": worded once per distinct count and kind.
    worded, inverse = np.unique(pair_count * len(names) + pair_type, return_inverse=True)
    words = [_counted(int(c) // len(names), rules.event_types[names[int(c) % len(names)]])
             for c in worded]
    parts = pa.array(words, pa.string()).take(pa.array(inverse.ravel(), pa.int64()))
    offsets = np.r_[0, np.cumsum(np.bincount(pair_run, minlength=n))].astype(np.int32)
    counted = pc.binary_join(pa.ListArray.from_arrays(pa.array(offsets), parts), ", ")

    start = heads["event_date"].to_numpy()
    title = pd.Series(counted.to_pandas(types_mapper=pd.ArrowDtype), dtype="str") + ", " + \
        _date_range(pd.Series(start), pd.Series(last_date))
    return pd.DataFrame({
        "child_id": heads["child_id"].to_numpy(),
        "entry_id": ("summary:" + heads["event_id"].astype("str")).to_numpy(),
        "event_date": start,
        "end_date": last_date,
        "event_type": SUMMARY_TYPE,
        "category": SUMMARY_CATEGORY,
        "title": title.to_numpy(),
        "detail": _seen(scored, events, in_run, events_run, n, rules).to_numpy(),
        "outcome": pd.Series(pd.NA, index=range(n), dtype="str").to_numpy(),
        # A summary is routine reading whatever it counts: its score is the highest of
        # its entries (never key), its level context, so the default view is key events
        # plus the last `history_years` of significant ones.
        "score": top.astype(np.int16),
        "level": "context",
        "reasons": pd.Series(pd.arrays.ArrowExtensionArray(
            _summary_reasons(entries, run, top, rules))),
        "merged_count": count,
        "is_summary": True,
        "is_gap": False,
        "_child": entries["child"][first_entry],
        "_day": entries["day"][first_entry],
        "_process": entries["process"][first_entry],
        "_position": first_lead,
    })


def _counted(count: int, spec) -> str:
    return f"{count} {spec.one if count == 1 else spec.plural}"


def _summary_reasons(entries: dict[str, np.ndarray], run: np.ndarray, top: np.ndarray,
                     rules: Rules) -> pa.Array:
    """Why each summary is there, then every escalation that fired inside it."""
    members = np.flatnonzero(run >= 0)  # in display order, so each run is contiguous
    starts = np.r_[0, np.flatnonzero(np.diff(run[members])) + 1]
    fired = np.bitwise_or.reduceat(entries["fired"][members] & _raising(rules), starts)
    history = top >= rules.levels.significant
    keys = pd.DataFrame({"history": history, "fired": fired})
    group = keys.groupby(["history", "fired"], sort=False).ngroup().to_numpy()
    first = keys.iloc[np.unique(group, return_index=True)[1]]
    lists = [[HISTORY_REASON if h else COLLAPSE_REASON, *escalation_reasons(int(f), rules)]
             for h, f in zip(first["history"], first["fired"], strict=True)]
    return pa.array(lists, pa.list_(pa.string())).take(pa.array(group, pa.int64()))


def _seen(scored: pd.DataFrame, events: dict[str, np.ndarray], in_run: np.ndarray,
          events_run: np.ndarray, n: int, rules: Rules) -> pd.Series:
    """'child seen at 8 of 9 visits, alone at 7' for summaries that count visits."""
    names = list(rules.event_types)
    visit = np.isin(events["process"][in_run],
                    [names.index(t) for t in ("cin_visit", "cp_visit", "cla_visit")])
    rows = events["rows"][in_run][visit]
    at = pa.array(rows)
    seen = np.asarray(pc.equal(arrow_text(scored["seen"]).take(at), "Y").fill_null(False))
    alone = np.asarray(pc.equal(arrow_text(scored["seen_alone"]).take(at), "Y")
                       .fill_null(False))
    visit_run = events_run[visit]
    visits = np.bincount(visit_run, minlength=n)
    seen_n = np.bincount(visit_run[seen], minlength=n)
    alone_n = np.bincount(visit_run[seen & alone], minlength=n)
    text = ("child seen at " + pd.Series(seen_n).astype("str") + " of " +
            pd.Series(visits).astype("str") + " visits, alone at " +
            pd.Series(alone_n).astype("str"))
    return text.where(visits > 0).astype("str")


def _date_range(start: pd.Series, end: pd.Series) -> pd.Series:
    """'12 Jan – 30 Jun 2016', '3 Nov 2015 – 2 Feb 2016' or '12 Jan 2016'."""
    first = start.to_numpy().astype("datetime64[D]")
    last = end.to_numpy().astype("datetime64[D]")
    days, inverse = np.unique(np.r_[first, last], return_inverse=True)
    long = np.array([long_date(d) for d in days.astype(str)], dtype=object)
    short = np.array([long_date(d).rsplit(" ", 1)[0] for d in days.astype(str)], dtype=object)
    a, b = inverse[:len(first)], inverse[len(first):]
    same_year = first.astype("datetime64[Y]") == last.astype("datetime64[Y]")
    text = np.where(first == last, long[a],
                    np.where(same_year, short[a] + " – " + long[b], long[a] + " – " + long[b]))
    return pd.Series(text, dtype="str")


# ----------------------------------------------------------------------- gaps

def _over_before_history(end: pd.Series, rules: Rules, as_of: pd.Timestamp) -> np.ndarray:
    if rules.collapse.history_years is None:
        return np.zeros(len(end), dtype=bool)
    cutoff = as_of.normalize() - pd.DateOffset(years=rules.collapse.history_years)
    return np.asarray(end < cutoff, dtype=bool)


def _gaps(found: pd.DataFrame, rules: Rules, children: _ChildRank, as_of: pd.Timestamp
          ) -> pd.DataFrame:
    """Gap entries: where no visit was recorded for longer than a standard allows."""
    if found.empty:
        return pd.DataFrame()
    standards = {s.id: s for s in rules.visit_gaps}
    reason = found["rule"].map({k: f"{k}: {s.reason}" for k, s in standards.items()})
    days = found["days"].astype("str")
    title = ("No visit recorded for " + days + " days").where(
        ~found["is_open"], "No visit recorded for " + days + " days, to date")
    period_words = {"cp_plan": "on a child protection plan",
                    "cin_plan": "on a child in need plan", "looked_after": "looked after",
                    "cin_episode": "the case was open", "early_help": "in early help",
                    "placement": "in a placement", "missing": "missing",
                    "legal_status": "under a legal status"}
    detail = ("while " + found["kind"].map(period_words) + "; the standard is a visit at least "
              "every " + found["max_days"].astype("str") + " days")
    start = found["start_date"].to_numpy().astype("datetime64[ns]")
    score = found["score"].to_numpy().astype(np.int16)
    child = found["child_id"]
    return pd.DataFrame({
        "child_id": child,
        "entry_id": "gap:" + found["rule"] + ":" + child + ":" + found["period_id"] + ":" +
        found["start_date"].dt.strftime("%Y-%m-%d"),
        "event_date": start,
        "end_date": found["end_date"].to_numpy(),
        "event_type": GAP_TYPE,
        "category": GAP_CATEGORY,
        "title": title,
        "detail": detail,
        "outcome": pd.Series(pd.NA, index=found.index, dtype="str"),
        "score": score,
        # A gap over before the history window is history too: routine reading.
        "level": np.where(_over_before_history(found["end_date"], rules, as_of), "context",
                          np.asarray(levels_of(score, rules).astype(str))),
        "reasons": pd.Series(pd.arrays.ArrowExtensionArray(pa.array(
            [[r] for r in reason], pa.list_(pa.string())))),
        "merged_count": 0,
        "is_summary": False,
        "is_gap": True,
        "_child": children.codes(child),
        "_day": start.astype("datetime64[D]").astype(np.int64),
        # After every event of the day the gap starts on.
        "_process": len(rules.event_types),
        "_position": np.arange(len(found)),
        "_key": 0,  # numbered after the entries and summaries by `chronology`
    })


# ----------------------------------------------------------------------- lists, ages

def _event_lists(scored: pd.DataFrame, rows: np.ndarray, final_row: np.ndarray,
                 is_lead: np.ndarray, n_rows: int) -> tuple[pd.Series, pd.Series]:
    """`event_ids` and `sources` of every row: its heading event first, then the rest in
    canonical order; sources as `table:record id`, each once."""
    order = np.lexsort((np.arange(len(rows)), ~is_lead, final_row))
    at = pa.array(rows[order])
    ids = arrow_text(scored["event_id"]).take(at)
    source = pc.binary_join_element_wise(arrow_text(scored["source_table"]).take(at),
                                         arrow_text(scored["source_id"]).take(at),
                                         pa.scalar(":", pa.large_string()))
    sorted_row = final_row[order]
    offsets = pa.array(np.r_[0, np.cumsum(np.bincount(sorted_row, minlength=n_rows))]
                       .astype(np.int32))
    # The same record can give several events of one entry (a plan's start and end):
    # it is listed once, where it first appears. A record is its table and its row.
    record = source_records(scored)[rows[order]]
    first = np.unique(sorted_row * (record.max() + 1 if len(record) else 1) + record,
                      return_index=True)[1]
    keep = np.zeros(len(source), dtype=bool)
    keep[first] = True
    source_offsets = pa.array(np.r_[0, np.cumsum(np.bincount(sorted_row[keep],
                                                             minlength=n_rows))].astype(np.int32))
    return (pd.Series(pd.arrays.ArrowExtensionArray(pa.ListArray.from_arrays(
                offsets, ids.cast(pa.string())))),
            pd.Series(pd.arrays.ArrowExtensionArray(pa.ListArray.from_arrays(
                source_offsets, source.filter(pa.array(keep)).cast(pa.string())))))


def ages(table: pd.DataFrame, births: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Age in days and in words at each row's `event_date` (the child's by `child_id`,
    from `births`); before birth, how long before."""
    birth = lookup(table["child_id"], births).to_numpy().astype("datetime64[D]")
    when = table["event_date"].to_numpy().astype("datetime64[D]")
    days = (when - birth).astype("timedelta64[D]").astype("float64")
    days[np.isnat(birth) | np.isnat(when)] = np.nan
    by, bm, bd = _ymd(birth)
    ey, em, ed = _ymd(when)
    months = (ey - by) * 12 + (em - bm) - (ed < bd)
    # One code per distinct wording: kind * 10^6 + number.
    kind = np.select([np.isnan(days), days < 0, days < 14, months < 3, months < 24],
                     [0, 1, 2, 3, 4], 5)
    number = np.select(
        [kind == 1, kind == 2, kind == 3, kind == 4, kind == 5],
        [np.ceil(-np.nan_to_num(days) / 7), np.nan_to_num(days),
         np.nan_to_num(days) // 7, months, months], 0).astype(np.int64)
    code = kind * 1_000_000 + number
    distinct, inverse = np.unique(code, return_inverse=True)
    words = np.array([_age_words(int(c)) for c in distinct], dtype=object)[inverse]
    age_days = pd.array(np.where(np.isnan(days), 0, days).astype(np.int64), dtype="Int64")
    age_days[np.isnan(days)] = pd.NA
    return pd.Series(age_days), pd.Series(words, dtype="str")


def _ymd(dates: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    safe = np.where(np.isnat(dates), np.datetime64("2000-01-01"), dates)
    years = safe.astype("datetime64[Y]")
    months = safe.astype("datetime64[M]")
    return (years.astype(np.int64) + 1970, (months - years).astype(np.int64) + 1,
            (safe - months).astype(np.int64) + 1)


def _age_words(code: int) -> str | None:
    kind, n = divmod(code, 1_000_000)
    if kind == 0:
        return None
    if kind == 1:
        return "before birth" if n == 0 else f"before birth ({plural(n, 'week')} before)"
    if kind == 2:
        return "newborn" if n == 0 else plural(n, "day")
    if kind == 3:
        return plural(n, "week")
    if kind == 4:
        return plural(n, "month")
    years, months = divmod(n, 12)
    return plural(years, "year") + (f" {plural(months, 'month')}" if months and years < 5
                                     else "")


# ----------------------------------------------------------------------- accounting

def _accounting(scored: pd.DataFrame, events: dict[str, np.ndarray], entry: np.ndarray,
                is_lead: np.ndarray, run: np.ndarray) -> pd.DataFrame:
    """Per source table: events in = heading an entry + merged + collapsed + left out."""
    tables = pc.dictionary_encode(arrow_text(scored["source_table"]))
    table = np.asarray(tables.indices.to_numpy(zero_copy_only=False), dtype=np.int64)
    names = tables.dictionary.to_pylist()
    collapsed = run[entry] >= 0 if len(entry) else np.array([], dtype=bool)
    fate = np.full(len(scored), 3)  # left out, unless kept below
    fate[events["rows"]] = np.select([collapsed, is_lead], [2, 0], 1)
    counts = np.bincount(table * 4 + fate, minlength=len(names) * 4).reshape(-1, 4)
    frame = pd.DataFrame(counts, columns=["entry", "merged", "collapsed", "filtered"])
    frame.insert(0, "events", counts.sum(axis=1))
    frame.insert(0, "table", names)
    # Key events counted in a summary or left out: the rules make both impossible, and
    # the quality report shows this stays 0.
    key = np.asarray(scored["level"] == "key", dtype=bool) & (fate >= 2)
    frame["key_hidden"] = np.bincount(table[key], minlength=len(names))
    return frame.sort_values("table", ignore_index=True).astype(
        {c: "int64" for c in ("events", "entry", "merged", "collapsed", "filtered",
                              "key_hidden")})


def _filtered(left_out: pd.DataFrame, rules: Rules) -> pd.DataFrame:
    counts = left_out["event_type"].value_counts().rename("events").rename_axis("event_type")
    frame = counts.reset_index()
    frame["rule"] = "type." + frame["event_type"]
    frame["reason"] = frame["event_type"].map({k: v.reason for k, v in
                                               rules.event_types.items()})
    return frame


def suite_frame(entries: pd.DataFrame, rules: Rules) -> pd.DataFrame:
    """The columns the chronology suite checks, with the invariants worked out per row:
    `_reasons` (how many), `_in_order` (seq runs 1..n within the child, dates never go
    back, children in id order) and `_holds_key_event` (a summary scoring as key)."""
    child = entries["child_id"]
    new_child = child.ne(child.shift()).to_numpy(dtype=bool)
    seq = entries["seq"].to_numpy()
    day = entries["event_date"].to_numpy().astype("datetime64[D]")
    previous_seq = np.r_[0, seq[:-1]]
    previous_day = np.r_[day[:1], day[:-1]]
    later_child = np.asarray(pc.greater(arrow_text(child), arrow_text(child.shift())
                                        ).fill_null(True), dtype=bool)
    in_order = np.where(new_child, (seq == 1) & later_child,
                        (seq == previous_seq + 1) & (day >= previous_day))
    reasons = pc.list_value_length(pa.array(entries["reasons"].array)).fill_null(0)
    return pd.DataFrame({
        "_row": np.arange(len(entries)),
        "child_id": child.to_numpy(),
        "entry_id": entries["entry_id"].to_numpy(),
        "event_date": entries["event_date"].to_numpy(),
        "level": entries["level"].to_numpy(),
        "score": entries["score"].to_numpy().astype("int64"),
        "merged_count": entries["merged_count"].to_numpy().astype("int64"),
        "_reasons": np.asarray(reasons, dtype=np.int64),
        "_in_order": in_order,
        "_holds_key_event": entries["is_summary"].to_numpy(dtype=bool)
        & (entries["score"].to_numpy() >= rules.levels.key),
    })
