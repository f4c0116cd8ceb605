"""Properties of score -> periods -> shape that hold for any shard of plausible events."""

from __future__ import annotations

from collections import Counter

import hypothesis.strategies as st
import pandas as pd
from hypothesis import HealthCheck, given, settings

from transforms import stage
from transforms.periods import periods
from transforms.rules import LEVELS, load_rules
from transforms.score import FILTERED, scored_events
from transforms.shape import Shaped, chronology, suite_frame

RULES = load_rules()
AS_OF = pd.Timestamp("2026-03-31")
FIRST = pd.Timestamp("2010-01-01")
PREFIX = {"ssd_contacts": "CON", "ssd_cin_episodes": "R", "ssd_cin_assessments": "AS",
          "ssd_s47_enquiry": "S", "ssd_initial_cp_conference": "IC", "ssd_cp_plans": "CPP",
          "ssd_cp_visits": "CV", "ssd_cin_plans": "CIN", "ssd_cin_visits": "V",
          "ssd_cla_episodes": "CE", "ssd_cla_placement": "PL", "ssd_cla_visits": "LV",
          "ssd_missing": "MI", "ssd_involvements": "IN", "ssd_address": "AD",
          "ssd_cla_health": "H", "ext_case_notes": "N"}
# Note texts: some match the escalations (disclosure, police, bruise), most do not.
WORDS = ("visit", "school", "mother", "disclosure", "police attended", "bruise", "A&E", "ok")
NOTE = st.lists(st.sampled_from(WORDS), max_size=4).map(" ".join)
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


class _Child:
    """One child's events as `stage.events` gives them; record ids count per table across
    the shard, so ids, sources and episodes never repeat between children."""

    def __init__(self, draw: st.DrawFn, child_id: str, birth: pd.Timestamp,
                 numbers: Counter[str], referrals: list[str]) -> None:
        self.draw, self.child_id, self.birth, self.numbers = draw, child_id, birth, numbers
        # Every referral id of the shard so far: sources only check that the referral a
        # row names exists, so a row may name another child's.
        self.referrals = referrals
        self.rows: list[dict[str, object]] = []

    def pick(self, *values: object) -> object:
        return self.draw(st.sampled_from(values))

    def record(self, table: str) -> str:
        self.numbers[table] += 1
        return f"{PREFIX[table]}{self.numbers[table]}"

    def one(self, table: str, event_type: str, when: pd.Timestamp, **columns: object) -> None:
        self.add(table, self.record(table), "primary", event_type, when, **columns)

    def add(self, table: str, record: str, role: str, event_type: str, when: pd.Timestamp,
            **columns: object) -> None:
        if when > AS_OF:  # nothing is recorded after the data's "as of" day
            return
        self.rows.append({
            "child_id": self.child_id, "event_id": f"{table.removeprefix('ssd_')}:{record}:{role}",
            "event_type": event_type, "event_date": when,
            "date_precision": "day" if when == when.normalize() else "time",
            "source_table": table, "source_id": record,
            "source_row": int("".join(c for c in record if c.isdigit())),
            "age_days": (when.normalize() - self.birth).days, **columns})

    def span(self, table: str, types: tuple[str, str], when: pd.Timestamp,
             days: tuple[int, int], start: dict | None = None, end: dict | None = None,
             episode: str | None = None, end_role: str = "end") -> str:
        """A record with a start and (unless still open) an end event; returns its id."""
        record = self.record(table)
        length = self.draw(st.none() | st.integers(*days))
        ends = None if length is None else when.normalize() + pd.Timedelta(days=length)
        ends = ends if ends is not None and ends <= AS_OF else None
        shared = {"episode_id": episode or record}
        self.add(table, record, "primary", types[0], when, end_date=ends, **shared,
                 **(start or {}))
        if ends is not None:
            self.add(table, record, end_role, types[1], ends, **shared, **(end or {}))
        return record

    def visits(self, table: str, event_type: str, when: pd.Timestamp, longest: int) -> None:
        """A run of statutory visits: what collapses into summaries."""
        for _ in range(self.draw(st.integers(0, 12))):
            when = when + pd.Timedelta(days=self.draw(st.integers(1, longest)))
            self.one(table, event_type, when, seen=self.pick("Y", "N"),
                     seen_alone=self.pick("Y", "N", None))

    def notes(self, when: pd.Timestamp, most: int = 3) -> None:
        for _ in range(self.draw(st.integers(0, most))):
            self.one("ext_case_notes", "case_note", when.normalize() + pd.Timedelta(
                days=self.pick(0, 0, 1, 9)), text=self.draw(NOTE), code="Phone call",
                flagged_significant=self.pick(True, False, None))


def _happening(kid: _Child, day: pd.Timestamp) -> None:
    """One thing that happened to a child, as the events every source records of it."""
    kind = kid.pick("referral", "cp_plan", "cin_plan", "cla", "missing", "notes", "worker",
                    "address", "health")
    if kind == "referral":  # a contact and notes on the referral's day merge with it
        if kid.pick(True, False):
            kid.one("ssd_contacts", "contact", day, code="6")
        ref = kid.span("ssd_cin_episodes", ("referral", "case_closed"), day, (20, 400),
                       {"code": "N1"}, {"code": kid.pick("RC7", "RC8", "RC1")}, end_role="close")
        kid.referrals.append(ref)
        kid.notes(day)
        if kid.pick(True, False):  # now and then naming another child's referral
            kid.span("ssd_cin_assessments", ("assessment_start", "assessment_completed"),
                     day + pd.Timedelta(days=kid.pick(0, 2, 5)), (0, 45),
                     end={"seen": kid.pick("Y", "N")}, end_role="completed",
                     episode=kid.pick(ref, ref, *[r for r in kid.referrals if r != ref][-2:]))
        if kid.pick(True, False):
            kid.span("ssd_s47_enquiry", ("s47_start", "s47_end"), day, (0, 20),
                     end={"outcome": "no further action"}, episode=ref)
        if kid.pick(True, False):
            kid.span("ssd_involvements", ("worker_allocated", "worker_ended"), day, (30, 500),
                     {"code": kid.pick("CHCHAN", None), "worker": "W1"}, episode=ref)
    elif kind == "cp_plan":  # conference and plan on one day, then visits
        kid.one("ssd_initial_cp_conference", "initial_cp_conference", day,
                outcome="child protection plan")
        kid.span("ssd_cp_plans", ("cp_plan_start", "cp_plan_end"), day, (90, 700),
                 {"code": "NEG"}, {"code": "NEG"})
        kid.visits("ssd_cp_visits", "cp_visit", day, 30)
    elif kind == "cin_plan":
        kid.span("ssd_cin_plans", ("cin_plan_start", "cin_plan_end"), day, (60, 500))
        kid.visits("ssd_cin_visits", "cin_visit", day, 50)
    elif kind == "cla":  # a period of care starts with its first placement
        care = kid.span("ssd_cla_episodes", ("cla_episode_start", "cla_episode_end"), day,
                        (30, 900), {"code": kid.pick("S", "L")}, {"code": kid.pick("X1", "E11")})
        kid.span("ssd_cla_placement", ("placement_start", "placement_end"), day, (10, 400),
                 {"code": "U1"}, {"code": kid.pick("CHILD", "OTHER", None)}, episode=care)
        kid.visits("ssd_cla_visits", "cla_visit", day, 100)
    elif kind == "missing":  # reported at a time of day
        kid.span("ssd_missing", ("missing_start", "missing_end"),
                 day + pd.Timedelta(hours=kid.draw(st.integers(0, 23))), (0, 3),
                 {"code": "M"}, {"code": "M"})
    elif kind == "notes":
        kid.notes(day, 6)
    elif kind == "worker":
        kid.span("ssd_involvements", ("worker_allocated", "worker_ended"), day, (30, 500),
                 {"worker": "W2"})
    elif kind == "address":
        kid.span("ssd_address", ("address_start", "address_end"), day, (100, 2000),
                 {"code": "HOME"}, {"code": "HOME"})
    else:
        kid.one("ssd_cla_health", "health_check", day, code=kid.pick("Refused", "Completed"))


@st.composite
def shards(draw: st.DrawFn) -> tuple[pd.DataFrame, pd.Series]:
    """1-5 children, each with a birth date and 0-40 events."""
    numbers: Counter[str] = Counter()
    referrals: list[str] = []
    rows: list[dict[str, object]] = []
    births: dict[str, pd.Timestamp] = {}
    for number in range(1, draw(st.integers(1, 5)) + 1):
        child = f"C{number}"
        births[child] = pd.Timestamp("2006-01-01") + pd.Timedelta(days=draw(st.integers(0, 5840)))
        kid = _Child(draw, child, births[child], numbers, referrals)
        if draw(st.booleans()):
            kid.add("ssd_person", child, "birth", "birth", births[child])
        budget = draw(st.integers(0, 40))
        # Days on a coarse grid, so that separate happenings sometimes share a day.
        start = max(FIRST, births[child] - pd.Timedelta(days=270))
        while len(kid.rows) < budget:
            slot = draw(st.integers(0, (AS_OF - start).days // 30))
            _happening(kid, min(start + pd.Timedelta(days=slot * 30 + kid.pick(0, 0, 3)), AS_OF))
        rows += kid.rows[:budget]
    events = stage._typed(pd.DataFrame(rows), stage.EVENT_COLUMNS)
    return events, pd.Series(births, dtype="datetime64[ns]")


def _run(events: pd.DataFrame, births: pd.Series) -> tuple[pd.DataFrame, Shaped]:
    scored = scored_events(events, RULES)
    return scored, chronology(scored, periods(scored, RULES), births, RULES, AS_OF, "RUN")


def _plain(entries: pd.DataFrame) -> pd.DataFrame:
    # List columns as Python lists, so that frames compare element by element.
    return entries.assign(**{c: pd.Series(entries[c].tolist(), index=entries.index, dtype=object)
                             for c in ("event_ids", "sources", "reasons")})


@SETTINGS
@given(shards())
def test_entries_are_in_order(shard: tuple[pd.DataFrame, pd.Series]) -> None:
    # A chronology is read top to bottom: seq counts 1..n per child, days never go back,
    # and each child's entries come together, children in id order.
    entries = _run(*shard)[1].entries
    for _, own in entries.groupby("child_id", sort=False):
        assert own["seq"].tolist() == list(range(1, len(own) + 1))
        days = own["event_date"].dt.normalize()
        assert (days.diff().dropna() >= pd.Timedelta(0)).all()
    assert entries["child_id"].is_monotonic_increasing
    assert suite_frame(entries, RULES)["_in_order"].all()


@SETTINGS
@given(shards(), st.integers(0, 2**32 - 1))
def test_same_input_gives_same_entries(shard: tuple[pd.DataFrame, pd.Series],
                                       seed: int) -> None:
    # Reruns must not change a chronology, and source rows arrive in no promised order:
    # the entries may depend on what the events are, never on the order they came in.
    events, births = shard
    first = _plain(_run(events, births)[1].entries)
    pd.testing.assert_frame_equal(first, _plain(_run(events, births)[1].entries))
    shuffled = events.sample(frac=1, random_state=seed).reset_index(drop=True)
    pd.testing.assert_frame_equal(first, _plain(_run(shuffled, births)[1].entries))


@SETTINGS
@given(shards())
def test_every_event_is_accounted_for_once(shard: tuple[pd.DataFrame, pd.Series]) -> None:
    # The manifest promises events in = events in entries + events left out: an event
    # shown twice or lost would make the chronology say more or less than the records.
    events, births = shard
    scored, shaped = _run(events, births)
    shown = [i for ids in shaped.entries["event_ids"].tolist() for i in ids]
    left_out = scored.loc[scored["level"] == FILTERED, "event_id"].tolist()
    assert events["event_id"].is_unique  # so equal sorted lists also rule out duplicates
    assert sorted(shown + left_out) == sorted(events["event_id"].tolist())
    assert shaped.entries["merged_count"].sum() == len(events) - len(left_out)
    acc = shaped.accounting.set_index("table")
    assert (acc["events"] == acc[["entry", "merged", "collapsed", "filtered"]].sum(axis=1)).all()
    assert acc["events"].to_dict() == events["source_table"].value_counts().to_dict()
    assert shaped.filtered["events"].sum() == len(left_out)


@SETTINGS
@given(shards())
def test_key_events_keep_their_own_key_entry(shard: tuple[pd.DataFrame, pd.Series]) -> None:
    # Key events are what the page opens on: merging only joins them to entries scoring
    # at least as much, and collapsing never touches key entries.
    scored, shaped = _run(*shard)
    where = {i: (level, summary) for level, summary, ids in zip(
        shaped.entries["level"], shaped.entries["is_summary"], shaped.entries["event_ids"],
        strict=True) for i in ids}
    for event_id in scored.loc[scored["level"] == "key", "event_id"]:
        assert where[event_id] == ("key", False), event_id
    assert shaped.accounting["key_hidden"].sum() == 0


@SETTINGS
@given(shards())
def test_no_entry_lists_another_childs_events(shard: tuple[pd.DataFrame, pd.Series]) -> None:
    # One child's chronology may be disclosed to that child: it must never name an event
    # or a source record of another child.
    events, births = shard
    owner = dict(zip(events["event_id"], events["child_id"], strict=True))
    record = events["source_table"] + ":" + events["source_id"]
    source_owner = dict(zip(record, events["child_id"], strict=True))
    entries = _run(events, births)[1].entries
    for child, ids, sources in zip(entries["child_id"], entries["event_ids"],
                                   entries["sources"], strict=True):
        assert {owner[i] for i in ids} <= {child}, (child, ids)
        assert {source_owner[s] for s in sources} <= {child}, (child, sources)


@SETTINGS
@given(shards())
def test_every_entry_says_why_and_how_much(shard: tuple[pd.DataFrame, pd.Series]) -> None:
    # A reader must see why each entry is there; events below context are left out, so
    # every entry shown is key, significant or context.
    entries = _run(*shard)[1].entries
    assert all(len(reasons) >= 1 for reasons in entries["reasons"].tolist())
    assert entries["level"].isin(LEVELS).all()
