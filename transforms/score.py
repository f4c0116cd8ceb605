"""Score: give every event a score, a level and the rules that produced them.

An event starts from its type's base score and each escalation that applies adds its
points (the total is kept within 0-100). Which escalations fired is kept as a bit mask
(`fired`, bit i for the i-th escalation in the rules file), so that reasons, the
sentences a social worker reads, are built once per distinct combination rather than
once per event (see `reason_lists`).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from transforms.frames import arrow_text
from transforms.rules import LEVELS, Escalation, Rules

FILTERED = "filtered"


def scored_events(events: pd.DataFrame, rules: Rules) -> pd.DataFrame:
    """`events` with `score` (0-100), `level` (key, significant, context or filtered) and
    `fired` (the escalations that applied, as a bit mask)."""
    types = list(rules.event_types)
    type_code = type_codes(events["event_type"], types)
    base = np.array([rules.event_types[t].score for t in types], dtype=np.int16)
    score = base[type_code].astype(np.int16)
    fired = np.zeros(len(events), dtype=np.uint64)
    columns = _Columns(events)
    # The rows of each type, found once: an escalation looks only at its types' rows.
    by_type = np.argsort(type_code, kind="stable")
    bounds = np.searchsorted(type_code[by_type], np.arange(len(types) + 1))
    for bit, escalation in enumerate(rules.escalations):
        rows = np.sort(np.concatenate([by_type[bounds[i]:bounds[i + 1]] for i in
                                       (types.index(t) for t in escalation.event_types)]))
        if len(rows) == 0:
            continue
        hit = rows[ESCALATIONS[escalation.kind](columns, rows, escalation)]
        score[hit] += escalation.points
        fired[hit] |= np.uint64(1) << np.uint64(bit)
    score = np.clip(score, 0, 100).astype(np.int16)
    return events.assign(score=score, level=levels_of(score, rules), fired=fired)


class _Columns:
    """The events' columns as escalations need them, each prepared once.

    Text columns are dictionary-encoded: codes, outcomes and note texts repeat, so a
    predicate is worked out once per distinct value and spread back by position.
    """

    def __init__(self, events: pd.DataFrame) -> None:
        self.events = events
        self._encoded: dict[str, tuple[pd.Series, np.ndarray]] = {}

    def array(self, name: str, rows: np.ndarray) -> np.ndarray:
        return self.events[name].to_numpy()[rows]

    def codes(self, name: str, rows: np.ndarray) -> np.ndarray:
        """An integer per distinct value of a text column (-1 where missing)."""
        return self._encode(name)[1][rows]

    def _encode(self, name: str) -> tuple[pd.Series, np.ndarray]:
        if name not in self._encoded:
            encoded = pc.dictionary_encode(arrow_text(self.events[name]))
            self._encoded[name] = (
                pd.Series(encoded.dictionary.to_pandas(), dtype="str"),
                np.asarray(encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False),
                           dtype=np.int64))
        return self._encoded[name]

    def where(self, name: str, rows: np.ndarray,
              predicate: Callable[[pd.Series], pd.Series]) -> np.ndarray:
        """predicate(value) for the given rows; False where the value is missing."""
        distinct, indices = self._encode(name)
        hits = np.append(np.asarray(predicate(distinct), dtype=bool), False)  # -1: missing
        return hits[indices[rows]]


def type_codes(event_types: pd.Series, types: list[str]) -> np.ndarray:
    """Position of each event's type in `types`.

    The events suite rejects unknown types and the rules name every type, so an unknown
    one here is a fault; it must not quietly take another type's score."""
    found = pc.index_in(arrow_text(event_types), value_set=pa.array(types, pa.large_string()))
    codes = np.asarray(found.fill_null(-1).to_numpy(zero_copy_only=False), dtype=np.int64)
    if (codes < 0).any():
        unknown = sorted(set(pd.Series(event_types)[codes < 0].astype(str)))
        raise ValueError(f"event types the rules do not know: {', '.join(unknown)}")
    return codes


def levels_of(score: np.ndarray, rules: Rules) -> pd.Categorical:
    """The level each score earns, as a categorical (key, significant, context, filtered)."""
    thresholds = [getattr(rules.levels, level) for level in LEVELS]
    codes = np.select([score >= t for t in thresholds], range(len(LEVELS)), len(LEVELS))
    return pd.Categorical.from_codes(codes, categories=[*LEVELS, FILTERED])


def reason_lists(event_types: pd.Series, fired: np.ndarray, rules: Rules) -> pa.Array:
    """Each entry's reasons as `rule id: sentence` strings: its type's base rule, then
    every escalation that fired, in rules-file order."""
    keys = pd.DataFrame({"type": np.asarray(event_types, dtype=object),
                         "fired": np.asarray(fired, dtype=np.uint64)})
    group = keys.groupby(["type", "fired"], sort=False).ngroup().to_numpy()
    first = keys.iloc[np.unique(group, return_index=True)[1]]  # one row per group, in order
    lists = [_reasons(t, int(m), rules) for t, m in zip(first["type"], first["fired"],
                                                          strict=True)]
    return pa.array(lists, type=pa.list_(pa.string())).take(pa.array(group, pa.int64()))


def _reasons(event_type: str, bits: int, rules: Rules) -> list[str]:
    return [f"type.{event_type}: {rules.event_types[event_type].reason}",
            *escalation_reasons(bits, rules)]


def escalation_reasons(bits: int, rules: Rules) -> list[str]:
    """`rule id: sentence` of every escalation set in the mask, in rules-file order."""
    return [f"{e.id}: {e.reason}" for i, e in enumerate(rules.escalations) if bits >> i & 1]


# ----------------------------------------------------------------- escalation kinds
# Each takes the prepared columns and the positions of the events of the escalation's
# types, and returns which of those it applies to. They are registered by the `kind`
# used in the rules file.

def _in_time_order(columns: _Columns, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray,
                                                                    np.ndarray]:
    """Positions of `rows` by child, day and event id (ids break ties, so the answer does
    not depend on the order the events came in); with their child codes and days."""
    child = columns.codes("child_id", rows)
    when = columns.array("event_date", rows).astype("datetime64[D]").astype(np.int64)
    ids = arrow_text(columns.events["event_id"]).take(pa.array(rows))
    rank = np.empty(len(rows), dtype=np.int64)
    rank[np.asarray(pc.sort_indices(ids))] = np.arange(len(rows))
    return np.lexsort((rank, when, child)), child, when


def _first_of_child(columns: _Columns, rows: np.ndarray, rule) -> np.ndarray:
    """The child's earliest event of these types (the smallest event id on a tie)."""
    order, child, _ = _in_time_order(columns, rows)
    first = np.r_[True, child[order][1:] != child[order][:-1]]
    hit = np.empty(len(rows), dtype=bool)
    hit[order] = first
    return hit


def _repeated(columns: _Columns, rows: np.ndarray, rule) -> np.ndarray:
    """The count-th (or later) event within `within_days` days, this one included."""
    order, child, when = _in_time_order(columns, rows)
    back = rule.count - 1
    child, when = child[order], when[order]
    hit_sorted = np.zeros(len(rows), dtype=bool)
    if len(rows) > back:
        hit_sorted[back:] = (child[back:] == child[:-back]) & \
            (when[back:] - when[:-back] <= rule.within_days)
    hit = np.empty(len(rows), dtype=bool)
    hit[order] = hit_sorted
    return hit


def _codes(columns: _Columns, rows: np.ndarray, rule) -> np.ndarray:
    wanted = set(rule.codes)
    matched = columns.where("code", rows, lambda values: [
        bool(wanted & {c.strip() for c in v.split(",")}) for v in values])
    if rule.kind == "code_not_in":
        has_code = columns.where("code", rows, lambda values: [True] * len(values))
        return has_code & ~matched
    return matched


def _outcome_mentions(columns: _Columns, rows: np.ndarray, rule) -> np.ndarray:
    phrases = [p.lower() for p in rule.phrases]
    return columns.where("outcome", rows, lambda values: [
        any(p in v.lower() for p in phrases) for v in values])


def _not_seen(columns: _Columns, rows: np.ndarray, rule) -> np.ndarray:
    # An unborn child cannot be seen: a pre-birth assessment says "not seen" of course.
    born = pd.array(columns.array("age_days", rows), dtype="Int64").fillna(0).to_numpy() >= 0
    return columns.where("seen", rows, lambda values: values.eq("N")) & born


def _not_seen_alone(columns: _Columns, rows: np.ndarray, rule) -> np.ndarray:
    # A baby or toddler cannot usefully be seen alone; the rule says from what age it counts.
    age = pd.array(columns.array("age_days", rows), dtype="Int64").fillna(0).to_numpy()
    seen = columns.where("seen", rows, lambda values: values.eq("Y"))
    not_alone = columns.where("seen_alone", rows, lambda values: values.eq("N"))
    return seen & not_alone & (age >= rule.from_age_years * 365.25)


def _flagged(columns: _Columns, rows: np.ndarray, rule) -> np.ndarray:
    flags = columns.events["flagged_significant"].iloc[rows]
    return flags.astype("boolean").fillna(False).to_numpy(dtype=bool)


def _text_mentions(columns: _Columns, rows: np.ndarray, rule) -> np.ndarray:
    pattern = "|".join(f"(?:{p})" for p in rule.patterns)
    return columns.where("text", rows, lambda values: values.str.contains(
        pattern, case=False, regex=True))


ESCALATIONS: dict[str, Callable[[_Columns, np.ndarray, Escalation], np.ndarray]] = {
    "first_of_child": _first_of_child,
    "repeated": _repeated,
    "code_in": _codes,
    "code_not_in": _codes,
    "outcome_mentions": _outcome_mentions,
    "not_seen": _not_seen,
    "not_seen_alone": _not_seen_alone,
    "flagged": _flagged,
    "text_mentions": _text_mentions,
}
