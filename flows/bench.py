"""`chronology bench`: time each stage on a generated database, without Prefect overhead.

Prefect adds a fixed cost per run (a temporary server) and per task; the benchmark
measures the work itself, stage by stage, so that a slow stage is visible.
"""

from __future__ import annotations

import json
import resource
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd

from flows import sinks
from flows.source import read_source, source_url
from flows.steps import stage_shard, validate_table
from flows.validation import SuiteRunner
from transforms.prepare import prepare
from transforms.shards import split
from transforms.ssd import TABLES

AS_OF = pd.Timestamp("2026-03-31 23:59:59")


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _database(path: Path, children: int, seed: int) -> tuple[Path, str]:
    meta = path.with_suffix(".json")
    wanted = {"children": children, "seed": seed}
    if path.exists() and meta.exists() and json.loads(meta.read_text()) == wanted:
        return path, "reused"
    from fixtures.generator import generate_database

    path.parent.mkdir(parents=True, exist_ok=True)
    report = generate_database(path, children=children, seed=seed)
    meta.write_text(json.dumps(wanted))
    rows = sum(report.rows.values())
    return path, f"generated in {report.seconds:.1f} s ({rows / report.seconds:,.0f} rows/s)"


def run_benchmark(database: Path, children: int, seed: int, shards: int, workers: int
                  ) -> Iterator[str]:
    path, how = _database(database, children, seed)
    yield f"database: {path} ({children:,} children, seed {seed}), {how}"
    runner = SuiteRunner()
    runner.warm_up()  # the GX import (~4 s) is start-up, not work

    started = time.perf_counter()
    raw = read_source(source_url(path), TABLES, None, workers)
    rows = sum(t.num_rows for t in raw.values())
    extract_s = time.perf_counter() - started

    clock = time.perf_counter()
    prepared = prepare({name: table.to_pandas(date_as_object=False) for name, table in raw.items()})
    del raw
    prepare_s = time.perf_counter() - clock

    clock = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        tables = list(pool.map(lambda name: validate_table(
            name, prepared.frames[name], prepared.births, prepared.known, AS_OF, runner),
            prepared.frames))
    validate_s = time.perf_counter() - clock

    clock = time.perf_counter()
    parts = split({t.name: t.kept for t in tables}, shards)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        outcomes = list(pool.map(lambda item: stage_shard(item[0], item[1], AS_OF, runner),
                                 enumerate(parts)))
    stage_s = time.perf_counter() - clock
    events = sum(len(o.events) for o in outcomes)

    clock = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        for outcome in outcomes:
            sinks.write_partition(outcome.events, Path(folder) / "events", outcome.shard)
    write_s = time.perf_counter() - clock
    total = time.perf_counter() - started

    cpu: dict[str, float] = {}
    for outcome in [*tables, *outcomes]:
        for name, seconds in outcome.seconds.items():
            cpu[name] = cpu.get(name, 0.0) + seconds
    yield f"source rows: {rows:,}; events: {events:,}; shards: {shards}; workers: {workers}"
    yield f"{'stage':<30}{'seconds':>9}{'rows/s':>14}"
    stages = (("extract (read source)", extract_s), ("prepare (pandas, keys)", prepare_s),
              ("conform + validate tables", validate_s), ("stage + validate events", stage_s),
              ("write events", write_s))
    for name, seconds in stages:
        yield f"{name:<30}{seconds:>9.1f}{rows / seconds:>14,.0f}"
    for name, seconds in cpu.items():
        yield f"  thread time in {name:<17}{seconds:>9.1f}"
    yield f"{'total':<30}{total:>9.1f}{rows / total:>14,.0f}"
    yield f"peak memory (max RSS): {_peak_mb():,.0f} MB"
