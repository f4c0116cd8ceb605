"""Work on one shard of children: conform, validate, stage, validate again.

Pure transforms do the work; this module only wires them to the GX runner.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import pandas as pd

from expectations import EVENTS_SUITE
from expectations.generate import AS_OF, id_parameter
from flows.validation import SuiteRunner
from transforms import conform, stage
from transforms.rejects import concat_rejects
from transforms.ssd import PERSON_ID, PERSON_TABLE, TABLES_BY_NAME
from transforms.validated import apply_failures, empty_findings, reject_source_rows


@dataclass
class ShardOutcome:
    shard: int
    events: pd.DataFrame
    people: pd.DataFrame
    rejects: pd.DataFrame
    findings: pd.DataFrame
    rows_staged: dict[str, int]
    events_by_table: dict[str, int]
    validation: list[dict] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)


def _known_ids(frames: dict[str, pd.DataFrame]) -> dict[str, list[str]]:
    """Ids that parents, owners and person columns may point at, within this shard."""
    wanted = {(PERSON_TABLE, PERSON_ID)}
    for name in frames:
        table = TABLES_BY_NAME[name]
        wanted |= {(p.table, p.key) for p in table.parents}
        if table.owner is not None:
            wanted.add((table.owner.table, table.owner.key))
    ids = {}
    for table, key in wanted:
        frame = frames.get(table)
        values = frame[key].dropna().unique().tolist() if frame is not None else []
        ids[id_parameter(table, key)] = values
    return ids


def process_shard(number: int, frames: dict[str, pd.DataFrame], as_of: pd.Timestamp,
                  runner: SuiteRunner) -> ShardOutcome:
    clock = time.perf_counter()
    seconds: dict[str, float] = {}

    def lap(stage_name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        seconds[stage_name] = seconds.get(stage_name, 0.0) + now - clock
        clock = now

    rejects, findings, validation = [], [empty_findings()], []
    conformed: dict[str, pd.DataFrame] = {}
    for name, frame in frames.items():
        result = conform.conform_table(TABLES_BY_NAME[name], frame)
        conformed[name], _ = result.frame, rejects.append(result.rejects)
    birth = conform.births(conformed[PERSON_TABLE])
    conformed = {name: conform.with_earliest_date(TABLES_BY_NAME[name], frame, birth)
                 for name, frame in conformed.items()}
    lap("conform")

    parameters = {AS_OF: as_of.isoformat(), **_known_ids(conformed)}
    kept: dict[str, pd.DataFrame] = {}
    for name, frame in conformed.items():
        table = TABLES_BY_NAME[name]
        failures = runner.run(name, frame, parameters)
        checked = apply_failures(table, frame, failures.rows)
        kept[name] = checked.kept
        rejects.append(checked.rejects)
        findings.append(checked.findings)
        validation += [{"suite": name, "shard": number, **s} for s in failures.results]
    lap("validate_raw")

    shard = stage.Shard(kept)
    people = stage.people(shard)
    events = stage.events(shard, people)
    lap("stage")

    failures = runner.run(EVENTS_SUITE, events.assign(_row=range(len(events))),
                          {AS_OF: as_of.isoformat(), "event_types": list(stage.EVENT_TYPES)})
    events, event_rejects = reject_source_rows(TABLES_BY_NAME, kept, events, failures.rows)
    rejects.append(event_rejects)
    dropped = event_rejects.groupby("table").size()
    rows_staged = {name: len(frame) - int(dropped.get(name, 0)) for name, frame in kept.items()}
    validation += [{"suite": EVENTS_SUITE, "shard": number, **s} for s in failures.results]
    lap("validate_events")

    events = events.sort_values(["child_id", "event_date", "event_id"], kind="stable",
                                ignore_index=True)
    return ShardOutcome(
        shard=number, events=events, people=people, rejects=concat_rejects(rejects),
        findings=pd.concat(findings, ignore_index=True), rows_staged=rows_staged,
        events_by_table=events["source_table"].value_counts().to_dict(),
        validation=validation, seconds=seconds)
