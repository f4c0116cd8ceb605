"""The two units of work the flow runs many of: validate one table, stage one shard.

Pure transforms do the work; this module only wires them to the GX runner. Raw tables
are validated whole, one GX run per table: a GX run costs ~40 ms per expectation
whatever the size of the frame, so validating every table once per shard would cost
shards × tables × that overhead. Whole tables also make duplicate keys and parent
existence plain whole-table questions.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import pandas as pd
import pyarrow as pa

from expectations import EVENTS_SUITE
from expectations.generate import AS_OF
from flows.validation import SuiteRunner
from transforms import conform, stage
from transforms.rejects import concat_rejects
from transforms.ssd import TABLES_BY_NAME
from transforms.validated import apply_failures, reject_source_rows


@dataclass
class TableOutcome:
    name: str
    kept: pd.DataFrame
    rejects: pd.DataFrame
    findings: pd.DataFrame
    validation: list[dict]
    seconds: dict[str, float]


@dataclass
class ShardOutcome:
    shard: int
    events: pd.DataFrame
    people: pd.DataFrame
    rejects: pd.DataFrame
    rows_staged: dict[str, int]
    events_by_table: dict[str, int]
    validation: list[dict] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)


def validate_table(name: str, frame: pd.DataFrame, births: pd.DataFrame,
                   known: dict[tuple[str, str], pa.Array], as_of: pd.Timestamp,
                   runner: SuiteRunner) -> TableOutcome:
    """Conform one whole source table and run its suite: kept rows, rejects, findings.

    `known` holds the ids that rows may point at, from the whole source
    (`transforms.shards.known_ids`); `births` the children's birth dates.
    """
    table = TABLES_BY_NAME[name]
    clock = time.perf_counter()
    conformed = conform.conform_table(table, frame)
    typed = conform.with_existence(
        table, conform.with_earliest_date(table, conformed.frame, births), known)
    conform_s = time.perf_counter() - clock
    failures = runner.run(name, typed, {AS_OF: as_of.isoformat()})
    checked = apply_failures(table, typed, failures.rows)
    return TableOutcome(
        name=name, kept=checked.kept,
        rejects=concat_rejects([conformed.rejects, checked.rejects]),
        findings=checked.findings,
        validation=[{"suite": name, **s} for s in failures.results],
        seconds={"conform": conform_s, "validate_raw": time.perf_counter() - clock - conform_s})


def stage_shard(number: int, kept: dict[str, pd.DataFrame], as_of: pd.Timestamp,
                runner: SuiteRunner) -> ShardOutcome:
    """Events and people of one shard's validated tables, checked by the events suite."""
    clock = time.perf_counter()
    shard = stage.Shard(kept)
    people = stage.people(shard)
    events = stage.events(shard, people)
    stage_s = time.perf_counter() - clock

    failures = runner.run(EVENTS_SUITE, events.assign(_row=range(len(events))),
                          {AS_OF: as_of.isoformat(), "event_types": list(stage.EVENT_TYPES)})
    events, rejects = reject_source_rows(TABLES_BY_NAME, kept, events, failures.rows)
    dropped = rejects.groupby("table").size()
    events = events.sort_values(["child_id", "event_date", "event_id"], kind="stable",
                                ignore_index=True)
    return ShardOutcome(
        shard=number, events=events, people=people, rejects=rejects,
        rows_staged={name: len(frame) - int(dropped.get(name, 0)) for name, frame in kept.items()},
        events_by_table=events["source_table"].value_counts().to_dict(),
        validation=[{"suite": EVENTS_SUITE, "shard": number, **s} for s in failures.results],
        seconds={"stage": stage_s, "validate_events": time.perf_counter() - clock - stage_s})
