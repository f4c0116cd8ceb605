"""The units of work the flow runs many of: validate one table (or one pass's rows of
it), stage and write one unit of shards (`transforms.shards.work_units`), and the loop
that runs them pass by pass (`build_in_passes`).

Pure transforms do the work; this module only wires them to the GX runner. A table is
validated in one GX run, or one a pass for a large table in a run of several passes: a
GX run costs a fixed ~30 ms plus ~10 ms per expectation whatever the size of the frame,
so validating every table once per shard would cost shards × tables × that overhead.
Duplicate keys and parent existence are whole-table questions, settled before
(`transforms.prepare.mark_source`).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pyarrow as pa

from expectations import CHRONOLOGY_SUITE, EVENTS_SUITE
from expectations.generate import AS_OF
from flows import sinks
from flows.validation import SuiteRunner
from flows.verdicts import Earlier, Verdicts, combined_verdicts
from transforms import conform, stage
from transforms.children import children, count_by
from transforms.freshness import stale_on
from transforms.pages import page_ids
from transforms.periods import periods
from transforms.prepare import Marked, Prepared
from transforms.rejects import concat_rejects
from transforms.rules import Rules
from transforms.score import scored_events
from transforms.shape import chronology, suite_frame
from transforms.shards import by_unit, split_table, work_units
from transforms.ssd import TABLES, TABLES_BY_NAME
from transforms.validated import apply_failures, reject_source_rows

TABLE_ORDER = {table.name: position for position, table in enumerate(TABLES)}


class ChronologyFault(RuntimeError):
    """The chronology broke one of its own invariants: a fault in chronology, never in
    the data. The run fails and nothing is published."""


@dataclass
class TableOutcome:
    name: str
    rejects: pd.DataFrame
    findings: pd.DataFrame
    validation: list[dict]
    seconds: dict[str, float]
    # The rows validated and how many of them were judged in an earlier run (not put to
    # GX again), and what GX found of the others (`flows/verdicts.py`).
    rows: dict[str, int] = field(default_factory=dict)
    found: Verdicts = field(default_factory=Verdicts.none)

    @classmethod
    def combined(cls, passes: list[TableOutcome]) -> TableOutcome:
        """One table's outcome from the outcomes of its rows in each pass: its rows were
        checked pass by pass, as if the table had been checked whole (every expectation
        of a raw suite is about one row)."""
        checked = [o.validation for o in passes if o.validation]  # empty: no rows
        return cls(
            name=passes[0].name,
            rejects=concat_rejects([o.rejects for o in passes]),
            findings=pd.concat([o.findings for o in passes], ignore_index=True),
            validation=[{**results[0], "unexpected": sum(r["unexpected"] for r in results),
                         "success": all(r["success"] for r in results)}
                        for results in zip(*checked, strict=True)],
            seconds=_summed([o.seconds for o in passes]),
            rows=_summed([o.rows for o in passes]),
            found=combined_verdicts([o.found for o in passes]))


@dataclass
class ShardOutcome:
    shards: tuple[int, ...]  # the unit of shards built
    people: pd.DataFrame
    rejects: pd.DataFrame
    rows_staged: dict[str, int]
    events_by_table: dict[str, int]
    validation: list[dict] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    children: pd.DataFrame = field(default_factory=pd.DataFrame)
    freshness: pd.DataFrame = field(default_factory=pd.DataFrame)
    periods: pd.DataFrame = field(default_factory=pd.DataFrame)
    # Per source table: events in, heading an entry, merged, collapsed, left out.
    accounting: pd.DataFrame = field(default_factory=pd.DataFrame)
    # Per event type left out: how many and the rule's reason.
    filtered: pd.DataFrame = field(default_factory=pd.DataFrame)
    # Entries by kind and level, and events the entries say they hold.
    entries: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Made:
    """What a run made of the children it built, gathered from its tables and units."""

    rejects: pd.DataFrame
    findings: pd.DataFrame
    people: pd.DataFrame
    children: pd.DataFrame    # with each child's page id
    periods: pd.DataFrame
    freshness: pd.DataFrame   # by child: when time alone stales their outputs, new entries
    filtered: pd.DataFrame    # per event type left out: how many and why
    validation: list[dict]    # every GX result, tables' first
    # By source table: rows validated, and how many were judged in an earlier run...
    rows_checked: list[dict] = field(default_factory=list)
    # ...and what GX found of the others (`flows/verdicts.py`)
    found: dict[str, Verdicts] = field(default_factory=dict)

    @classmethod
    def of(cls, prepare_rejects: pd.DataFrame, tables: list[TableOutcome],
           units: list[ShardOutcome]) -> Made:
        children = pd.concat([o.children for o in units], ignore_index=True)
        children["page_id"] = page_ids(children["child_id"])
        return cls(
            rejects=concat_rejects([prepare_rejects, *(t.rejects for t in tables),
                                    *(o.rejects for o in units)]),
            findings=pd.concat([t.findings for t in tables], ignore_index=True),
            people=pd.concat([o.people for o in units], ignore_index=True),
            children=children,
            periods=pd.concat([o.periods for o in units], ignore_index=True),
            freshness=pd.concat([o.freshness for o in units], ignore_index=True),
            filtered=pd.concat([o.filtered for o in units], ignore_index=True),
            validation=[r for t in tables for r in t.validation] +
            [r for o in units for r in o.validation],
            rows_checked=[{"suite": t.name, **t.rows} for t in tables],
            found={t.name: t.found for t in tables})


def validate_table(name: str, frame: pd.DataFrame, births: pd.DataFrame,
                   known: dict[tuple[str, str], pa.Array], as_of: pd.Timestamp,
                   runner: SuiteRunner, shards: int, earlier: Earlier | None = None
                   ) -> tuple[list[pd.DataFrame], TableOutcome]:
    """Conform one source table (or one pass's rows of it: every expectation of a raw
    suite is about one row) and run its suite: the kept rows cut into shards of
    children, and the outcome (rejects, findings, validation results, timings).

    `known` holds the ids that rows may point at, from the whole source
    (`transforms.prepare.known_ids`); `births` the children's birth dates; `earlier` what
    earlier runs found of rows, which are not put to GX again.
    """
    table = TABLES_BY_NAME[name]
    clock = time.perf_counter()
    conformed = conform.conform_table(table, frame)
    typed = conform.with_existence(table, conform.with_json_checks(
        table, conform.with_birth_checks(table, conformed.frame, births)), known)
    conform_s = time.perf_counter() - clock
    failures = runner.run(name, typed, {AS_OF: as_of.isoformat()},
                          ignore_rows=typed.loc[conform.rejected(typed), "_row"], earlier=earlier)
    checked = apply_failures(table, typed, failures.rows)
    validate_s = time.perf_counter() - clock - conform_s
    parts = split_table(conformed.frame.drop(columns=[conform.KEY_COPIES, conform.REJECTED]),
                        table.child_column, shards, checked.keep)
    return parts, TableOutcome(
        name=name,
        rejects=concat_rejects([conformed.rejects, checked.rejects]),
        findings=checked.findings,
        validation=[{"suite": name, **s} for s in failures.results],
        seconds={"conform": conform_s, "validate_raw": validate_s,
                 "split": time.perf_counter() - clock - conform_s - validate_s},
        rows={"rows": len(typed), "judged_before": failures.judged_before},
        found=failures.found)


class Laps:
    """A stopwatch of stages: `laps(stage)` adds the time since the last call (or since
    it was made) to that stage's seconds, so a stage met once a pass adds up."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._clock = time.perf_counter()

    def __call__(self, stage: str) -> None:
        now = time.perf_counter()
        self.seconds[stage] = self.seconds.get(stage, 0.0) + now - self._clock
        self._clock = now


# What checks the tables of one pass: their shard parts and outcomes, by table.
ValidatePass = Callable[[Prepared], list[tuple[list[pd.DataFrame], TableOutcome]]]
# What builds the units of one pass from their tables (`by_unit`).
BuildUnits = Callable[[list[tuple[int, ...]], list[dict[str, pd.DataFrame]]],
                      list[ShardOutcome]]


def build_in_passes(marked: Marked, shards: int, children: int, validate: ValidatePass,
                    build: BuildUnits, lap: Callable[[str], object] = lambda stage: None
                    ) -> tuple[list[TableOutcome], list[ShardOutcome]]:
    """Validate and build the `children` children of `marked` in its passes
    (`transforms.shards.build_passes`), so that only one pass's rows of the large tables
    are held as pandas frames: each table's outcome over every pass, in the contract's
    table order, and every unit's. `validate` and `build` run a pass's tables and units
    (side by side, on threads or a cluster); `lap` is told when each stage ends."""
    give_back_freed_memory()  # what reading and marking the source took and let go
    # The small tables are checked whole, once: their shard parts wait for their pass.
    whole = validate(marked.whole_tables())
    lap("validate_source")
    by_table: dict[str, list[TableOutcome]] = {}
    units_built: list[ShardOutcome] = []
    for number, pass_shards in enumerate(marked.passes):
        validated = validate(marked.pass_tables(number)) if marked.spilled[number] else []
        lap("validate_source")
        for _, outcome in validated:
            by_table.setdefault(outcome.name, []).append(outcome)
        # Children fall into shards by a hash of their id: about as many in each.
        units = work_units(pass_shards, -(-children * len(pass_shards) // shards))
        # In the contract's table order, whatever order the tables were checked in, so
        # that a unit's events are in the same order however the run was cut up.
        parts = by_unit({outcome.name: shard_parts for shard_parts, outcome in sorted(
            [*validated, *((_of_shards(parts, pass_shards), outcome)
                           for parts, outcome in whole)],
            key=lambda checked: TABLE_ORDER[checked[1].name])}, units)
        del validated
        units_built += build(units, parts)
        del parts
        give_back_freed_memory()
        lap("stage_score_shape")
    for _, outcome in whole:
        by_table.setdefault(outcome.name, []).append(outcome)
    return sorted((TableOutcome.combined(passes) for passes in by_table.values()),
                  key=lambda outcome: TABLE_ORDER[outcome.name]), units_built


@contextmanager
def what_lives_on_set_aside() -> Iterator[None]:
    """Within, Python's full collections skip the objects alive on entry (after one
    full collection): the modules imported (Prefect's and pandas' alone make 190,000)
    and the run's own state. `give_back_freed_memory` collects after each pass:
    Prefect's futures hold each task's result in a reference cycle, ~300 MB a pass at
    100,000 children. Each of those collections went through every object of the
    process (0.25-0.35 s); within, only through those made since. On leaving, the
    objects set aside are collected as before."""
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


# glibc's `mallopt` parameters (malloc.h), and the values `FreedMemoryKept` leaves
# when it ends: glibc's default for the most blocks mapped on their own, and the
# threshold and trim that its own sliding threshold reaches for blocks of 32 MB (and
# had reached in a run by the end of its fingerprints, probed).
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_MMAP_MAX = -1, -3, -4
_MMAP_MAX, _MMAP_THRESHOLD, _TRIM_THRESHOLD = 65536, 32 << 20, 64 << 20
_NEVER_TRIM = -1  # as a trim threshold (mallopt(3))


class FreedMemoryKept:
    """Within, memory the run frees is kept for its next allocations instead of being
    handed back to the system at once; on leaving (or `close`, whichever comes first),
    what is free is handed back.

    Reading and fingerprinting the whole source make and free many large blocks: the
    driver's batches, a column of hashes of 5.5 million case notes (44 MB), its
    temporaries. glibc maps each block above its threshold (at most 32 MB) on its own
    and unmaps it when freed, and trims its heaps as they shrink; Arrow's allocator
    (mimalloc) hands freed pages back after 10 ms; and the system must clear every page
    of the next block before the run may use it (docs/benchmarks.md, session 19). So
    within, glibc trims no heap and maps on its own only the blocks its heaps cannot
    hold (above ~64 MB, on threads other than the main one), and Arrow allocates from
    glibc too; work started within (the carry's first partitions) allocates from glibc
    until it ends. Only for such short-lived blocks: what is made within and freed after
    stays in glibc's heaps until the next hand-back (kept through the whole run, a next
    night's peak memory rose from 3.2 to 4.2 GB; through the marking of the rows, whose
    tables the first pass frees, to 3.6 GB). Outside glibc (no `malloc_trim`), nothing
    changes.

    Setting these parameters ends glibc's sliding threshold for the rest of the process
    (and overrides any set by `MALLOC_*` variables): `close` sets it where it had slid
    to by then."""

    def __init__(self) -> None:
        self._arrow_pool: pa.MemoryPool | None = None

    def __enter__(self) -> FreedMemoryKept:
        if _MALLOPT is not None and getattr(_LIBC, "malloc_trim", None) is not None:
            self._arrow_pool = pa.default_memory_pool()
            _MALLOPT(_M_MMAP_MAX, 0)
            _MALLOPT(_M_TRIM_THRESHOLD, _NEVER_TRIM)
            pa.set_memory_pool(pa.system_memory_pool())
        return self

    def __exit__(self, *_) -> None:
        self.close()

    def close(self) -> None:
        """Stop keeping freed memory, and hand back what is free (once)."""
        if self._arrow_pool is None:
            return
        # Blocks allocated within are freed to glibc whenever they go: Arrow's buffers
        # remember their pool.
        pa.set_memory_pool(self._arrow_pool)
        self._arrow_pool = None
        _MALLOPT(_M_MMAP_MAX, _MMAP_MAX)
        _MALLOPT(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD)
        _MALLOPT(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD)
        # What is free already: collecting what is still held (a collection of every
        # object, 0.1 s) is left to the first pass, which collects as it starts.
        _hand_back()


def give_back_freed_memory() -> None:
    """Hand the memory a pass freed back to the system. pandas' many small objects are
    freed into glibc's heaps, which keep the space for later by default: without this, a
    run of passes would keep the high-water mark of each pass and its scraps (measured
    at 100,000 children: 3.9 GB held after the last of four passes, 2.2 GB with it).
    Arrow's own allocator (mimalloc here) keeps what Arrow freed likewise."""
    gc.collect()
    _hand_back()


def _hand_back() -> None:
    """Hand what glibc and Arrow's allocator hold freed back to the system."""
    trim = getattr(_LIBC, "malloc_trim", None)  # glibc only
    if trim is not None:
        trim(0)
    pa.default_memory_pool().release_unused()


def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        return None if name is None else ctypes.CDLL(name)
    except OSError:  # found but not loadable
        return None


_LIBC = _libc()


def _mallopt() -> Callable[[int, int], int] | None:
    """glibc's `mallopt(int, int)`, its C types declared."""
    mallopt = getattr(_LIBC, "mallopt", None)
    if mallopt is not None:
        mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return mallopt


_MALLOPT = _mallopt()


def _of_shards(parts: list[pd.DataFrame], shards: tuple[int, ...]) -> list[pd.DataFrame]:
    """A table's shard parts with only those of `shards` left (others empty)."""
    return [part if number in shards else part.iloc[:0] for number, part in enumerate(parts)]


def stage_unit(unit: tuple[int, ...], kept: dict[str, pd.DataFrame], as_of: pd.Timestamp,
               runner: SuiteRunner) -> tuple[pd.DataFrame, ShardOutcome]:
    """Events and people of one unit of shards' validated tables, checked by the events
    suite."""
    clock = time.perf_counter()
    shard = stage.Shard(kept)
    people = stage.people(shard)
    events = stage.events(shard, people)
    stage_s = time.perf_counter() - clock

    failures = runner.run(EVENTS_SUITE, events.assign(_row=range(len(events))),
                          {AS_OF: as_of.isoformat(), "event_types": list(stage.EVENT_TYPES)})
    events, rejects = reject_source_rows(TABLES_BY_NAME, kept, events, failures.rows)
    dropped = rejects.groupby("table").size()
    return events, ShardOutcome(
        shards=unit, people=people, rejects=rejects,
        rows_staged={name: len(frame) - int(dropped.get(name, 0)) for name, frame in kept.items()},
        events_by_table=events["source_table"].value_counts().to_dict(),
        validation=[{"suite": EVENTS_SUITE, "shards": list(unit), **s}
                    for s in failures.results],
        seconds={"stage": stage_s, "validate_events": time.perf_counter() - clock - stage_s})


def stage_and_write_unit(unit: tuple[int, ...], kept: dict[str, pd.DataFrame],
                         as_of: pd.Timestamp, runner: SuiteRunner, version: Path, rules: Rules,
                         run_id: str, shards: int, first_seen: pd.Series | None = None
                         ) -> ShardOutcome:
    """Stage, validate and write one unit of shards' events, then score and shape them
    into its chronology, check that and write it, each shard's rows in its partition.

    Only counts and the small per-child tables come back: the shard's events and entries
    are on disk and need not stay in memory.
    """
    events, outcome = stage_unit(unit, kept, as_of, runner)
    clock = time.perf_counter()
    sinks.write_partitions(events, version / "events", unit, shards)
    outcome.seconds["write_events"] = time.perf_counter() - clock

    shaped = score_and_shape(events, outcome.people, rules, as_of, run_id, first_seen)
    del events
    outcome.children = shaped.children
    outcome.freshness = shaped.freshness
    outcome.periods = shaped.periods
    outcome.accounting = shaped.accounting
    outcome.filtered = shaped.filtered
    outcome.seconds.update(shaped.seconds)

    clock = time.perf_counter()
    entries = shaped.entries
    failures = runner.run(CHRONOLOGY_SUITE, suite_frame(entries, rules))
    outcome.validation += [{"suite": CHRONOLOGY_SUITE, "shards": list(unit), **s}
                           for s in failures.results]
    if not failures.rows.empty:
        first = failures.rows.iloc[0]
        raise ChronologyFault(f"shards {list(unit)}: {len(failures.rows)} chronology entries "
                              f"break the suite, first {first['rule']}: {first['reason']}")
    outcome.entries = _entry_counts(entries)
    outcome.seconds["validate_chronology"] = time.perf_counter() - clock
    clock = time.perf_counter()
    sinks.write_partitions(entries, version / "chronology", unit, shards)
    outcome.seconds["write_chronology"] = time.perf_counter() - clock
    return outcome


@dataclass
class ShapedShard:
    """A shard's chronology and the tables made with it."""

    entries: pd.DataFrame
    children: pd.DataFrame
    # By child: when time alone would change their outputs, and the entries marked new.
    freshness: pd.DataFrame
    periods: pd.DataFrame
    accounting: pd.DataFrame
    filtered: pd.DataFrame
    seconds: dict[str, float]


def score_and_shape(events: pd.DataFrame, people: pd.DataFrame, rules: Rules,
                    as_of: pd.Timestamp, run_id: str, first_seen: pd.Series | None = None
                    ) -> ShapedShard:
    """Score a shard's validated events and shape them into its chronology, periods and
    children's header facts."""
    clock = time.perf_counter()
    scored = scored_events(events, rules)
    score_s = time.perf_counter() - clock
    clock = time.perf_counter()
    day = as_of.normalize()
    found = periods(scored, rules)
    shaped = chronology(scored, found, stage.births_of(people), rules, day, run_id,
                        first_seen)
    shape_s = time.perf_counter() - clock
    clock = time.perf_counter()
    header = children(people, found, scored, shaped.entries, day)
    # Entries the page marks new: until a run shows the page again, the marks stay.
    marked = shaped.entries["first_seen_run"].eq(run_id).to_numpy(bool) & \
        (first_seen is not None)
    freshness = pd.DataFrame({
        "child_id": header["child_id"],
        "stale_on": stale_on(header, found, scored, shaped.entries, rules, day).to_numpy(),
        "new_entries": count_by(header["child_id"], shaped.entries["child_id"][marked])})
    return ShapedShard(entries=shaped.entries, children=header, freshness=freshness,
                       periods=found,
                       accounting=shaped.accounting, filtered=shaped.filtered,
                       seconds={"score": score_s, "shape": shape_s,
                                "children": time.perf_counter() - clock})


def _summed(counts: list[dict]) -> dict:
    summed: dict = {}
    for of_pass in counts:
        for name, count in of_pass.items():
            summed[name] = summed.get(name, 0) + count
    return summed


# The counts `_entry_counts` makes, for a run that made no entries.
NO_ENTRIES = dict.fromkeys(("entries", "key", "significant", "context", "summaries", "gaps",
                            "events_in_entries", "events_in_summaries", "no_reason"), 0)


def _entry_counts(entries: pd.DataFrame) -> dict[str, int]:
    summary = entries["is_summary"].to_numpy(dtype=bool)
    gap = entries["is_gap"].to_numpy(dtype=bool)
    level = entries["level"]
    return {
        "entries": len(entries),
        "key": int(level.eq("key").sum()),
        "significant": int(level.eq("significant").sum()),
        "context": int(level.eq("context").sum()),
        "summaries": int(summary.sum()),
        "gaps": int(gap.sum()),
        # What the entries themselves say they hold: checked against the events' fates.
        "events_in_entries": int(entries["merged_count"].sum()),
        "events_in_summaries": int(entries.loc[summary, "merged_count"].sum()),
        "no_reason": int((entries["reasons"].list.len() == 0).sum()),
    }
