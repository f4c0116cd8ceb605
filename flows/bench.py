"""`chronology bench`: time each stage on a generated database, without Prefect overhead.

Prefect adds a fixed cost per run (a temporary server) and per task; the benchmark
measures the work itself, stage by stage, so that a slow stage is visible.
"""

from __future__ import annotations

import json
import os
import resource
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from fixtures.generator import DEMO_AS_OF
from flows import sinks
from flows.site import peak_mb, render_site, site_line
from flows.source import read_source, read_source_parts, source_url
from flows.steps import (
    FreedMemoryKept,
    Laps,
    ShardOutcome,
    build_in_passes,
    give_back_freed_memory,
    score_and_shape,
    stage_and_write_unit,
    validate_table,
    what_lives_on_set_aside,
)
from flows.validation import SuiteRunner
from transforms.fingerprint import row_children
from transforms.pages import RunInfo, page_ids
from transforms.prepare import Prepared, known_ids, mark_source
from transforms.reconcile import event_reconciliation, quality_line, quality_report
from transforms.rules import Rules, load_rules
from transforms.shards import build_passes
from transforms.ssd import TABLES, TABLES_BY_NAME

# The generated records run up to DEMO_AS_OF; the run is "as of" the end of that day.
AS_OF = pd.Timestamp(DEMO_AS_OF) + pd.Timedelta(days=1) - pd.Timedelta(seconds=1)


def _peak_mb() -> float:
    return peak_mb() or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class ProcessTreeMemory:
    """The most memory this process and the worker processes it started held at once:
    their resident sizes summed, sampled ten times a second while in a `with` block.
    The render workers are processes of their own, so this process's peak alone is not
    what the machine must have. `lap(stage)` ends a stage: `stage_peaks` holds the most
    held during each, so that what grows with the number of children shows by stage."""

    def __init__(self, interval: float = 0.1) -> None:
        self.interval = interval
        self.peak_mb = 0.0
        self.stage_peaks: dict[str, float] = {}
        self._since_lap = 0.0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._sampler = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> ProcessTreeMemory:
        self._sampler.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._sampler.join()

    def lap(self, stage: str) -> None:
        now = process_tree_mb(os.getpid())
        with self._lock:
            self.stage_peaks[stage] = max(self.stage_peaks.get(stage, 0.0),
                                          self._since_lap, now)
            self._since_lap = now

    def _sample(self) -> None:
        while True:
            now = process_tree_mb(os.getpid())
            with self._lock:
                self.peak_mb = max(self.peak_mb, now)
                self._since_lap = max(self._since_lap, now)
            if self._stop.wait(self.interval):
                return


def process_tree_mb(root: int) -> float:
    """The resident memory of process `root` and all its descendants, in MB (Linux:
    each thread's `children` file names the processes it started)."""
    pages, frontier = 0, [root]
    while frontier:
        pid = frontier.pop()
        try:
            pages += int(Path(f"/proc/{pid}/statm").read_text().split()[1])
            for children in Path(f"/proc/{pid}/task").glob("*/children"):
                frontier += [int(child) for child in children.read_text().split()]
        except (OSError, ValueError, IndexError):  # the process ended meanwhile
            continue
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def _processor_seconds() -> float:
    """Processor time used so far, user and system, by this process and the worker
    processes it has waited for: on a shared machine a steadier measure of the work
    than the time on the clock."""
    return sum(usage.ru_utime + usage.ru_stime for usage in (
        resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)))


def _forget_peak_memory() -> None:
    """Start this process's peak memory (VmHWM) again from what it holds now (Linux 4.0
    and later; elsewhere nothing happens)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def _database(path: Path, children: int, seed: int) -> tuple[Path, str]:
    meta = path.with_suffix(".json")
    wanted = {"children": children, "seed": seed}
    if path.exists() and meta.exists() and json.loads(meta.read_text()) == wanted:
        return path, "reused"
    from fixtures.generator import generate_database

    path.parent.mkdir(parents=True, exist_ok=True)
    report = generate_database(path, children=children, seed=seed)
    meta.write_text(json.dumps(wanted))
    _forget_peak_memory()  # the generator's is not the benchmark's
    rows = sum(report.rows.values())
    return path, f"generated in {report.seconds:.1f} s ({rows / report.seconds:,.0f} rows/s)"


def _score_and_shape_again(folder: Path, outcome: ShardOutcome, rules: Rules
                           ) -> dict[str, float]:
    clock = time.perf_counter()
    events = pd.concat([pd.read_parquet(folder / "events" / f"shard={number}")
                        for number in outcome.shards], ignore_index=True)
    read_s = time.perf_counter() - clock
    shaped = score_and_shape(events, outcome.people, rules, AS_OF, "bench")
    return {"read": read_s, **shaped.seconds}


def run_benchmark(database: Path, children: int, seed: int, shards: int, workers: int
                  ) -> Iterator[str]:
    path, how = _database(database, children, seed)
    yield f"database: {path} ({children:,} children, seed {seed}), {how}"
    runner = SuiteRunner()
    runner.warm_up()  # the GX import (~4 s) is start-up, not work
    rules = load_rules()

    _read_through(path)  # the floor's read below finds the file cached too
    passes = build_passes(shards, children)
    with ThreadPoolExecutor(max_workers=workers) as pool, \
            tempfile.TemporaryDirectory() as folder:
        with ProcessTreeMemory() as memory:
            cpu_before = os.times()
            started = time.perf_counter()
            # As the flow reads: each part to a file as it arrives, gone through a part at a
            # time after; freed memory kept for reuse until the rows are to be marked
            # (`FreedMemoryKept`: what marking makes lives into the passes).
            with FreedMemoryKept():
                read = read_source_parts(source_url(path), TABLES, None, workers,
                                         Path(folder) / "source")
                rows = sum(read.rows(name) for name in read)
                extract_s = time.perf_counter() - started
                memory.lap("extract")
                laps = Laps()
                stage_seconds = laps.seconds
                of_rows, known = row_children(read, TABLES_BY_NAME, pool.map), known_ids(read)

            def lap(stage: str) -> None:
                laps(stage)
                memory.lap(stage)

            marked = mark_source(read, of_rows, known, shards, passes, Path(folder) / "passes",
                                 pool.map)
            read.discard()
            del read, of_rows, known
            lap("prepare")

            def validate(prepared: Prepared) -> list:
                names = prepared.largest_first()
                return list(pool.map(partial(
                    validate_table, births=prepared.births, known=prepared.known,
                    as_of=AS_OF, runner=runner, shards=shards),
                    names, [prepared.frames[n] for n in names]))

            # As in the flow, pass by pass, and each unit of shards is staged, validated,
            # scored, shaped and written by one worker.
            with what_lives_on_set_aside():
                tables, outcomes = build_in_passes(
                    marked, shards, children, validate,
                    lambda units, parts: list(pool.map(lambda item: stage_and_write_unit(
                        item[0], item[1], AS_OF, runner, Path(folder), rules, "bench",
                        shards), zip(units, parts, strict=True))), lap)
                marked.discard()
                del marked
                give_back_freed_memory()  # as the flow does before rendering
            total = time.perf_counter() - started
            cpu_after = os.times()

            # Rendering every page from the written outputs, as the flow's render stage
            # does.
            header = pd.concat([o.children for o in outcomes], ignore_index=True)
            sinks.write_table(header.assign(page_id=page_ids(header["child_id"])),
                              Path(folder) / "children.parquet")
            sinks.write_table(pd.concat([o.periods for o in outcomes], ignore_index=True),
                              Path(folder) / "periods.parquet")
            site = render_site(Path(folder), shards, workers, rules, RunInfo(
                run_id="bench", generated_at=datetime.now(UTC), as_of=AS_OF.normalize(),
                rules_hash=rules.digest, marks_new=False))
            memory.lap("render")
        own_peak_mb = _peak_mb()  # before the floor, which holds the source and outputs

        # Scoring and shaping alone: the run's events read back shard by shard and put
        # through the same code, so their time is not mixed with staging's.
        clock = time.perf_counter()
        alone = list(pool.map(lambda outcome: _score_and_shape_again(
            Path(folder), outcome, rules), outcomes))
        alone_s = time.perf_counter() - clock
        floor = io_floor(path, Path(folder), workers)
    events = sum(sum(o.events_by_table.values()) for o in outcomes)

    cpu: dict[str, float] = {}
    for outcome in [*tables, *outcomes]:
        for name, seconds in outcome.seconds.items():
            cpu[name] = cpu.get(name, 0.0) + seconds
    yield (f"source rows: {rows:,}; events: {events:,}; shards: {shards}, built in "
           f"{len(passes)} pass{'es' if len(passes) > 1 else ''}; workers: {workers}")
    # Each stage's peak is of this process and its workers together, as `peak memory`.
    yield f"{'stage':<36}{'seconds':>9}{'rows/s':>14}{'peak MB':>10}"
    stages = (("extract (read source)", "extract", extract_s),
              ("prepare (children, keys, passes)", "prepare", stage_seconds["prepare"]),
              ("conform + validate + split tables", "validate_source",
               stage_seconds["validate_source"]),
              ("per shard: stage, score, shape, write", "stage_score_shape",
               stage_seconds["stage_score_shape"]))
    for name, stage, seconds in stages:
        yield (f"{name:<36}{seconds:>9.1f}{rows / seconds:>14,.0f}"
               f"{memory.stage_peaks[stage]:>10,.0f}")
    for name, seconds in cpu.items():
        yield f"  thread time in {name:<21}{seconds:>9.1f}"
    yield f"{'total':<36}{total:>9.1f}{rows / total:>14,.0f}"
    # System time is mostly the kernel handing out fresh zeroed memory: it falls when
    # fewer copies of the tables are made.
    yield (f"CPU time: user {cpu_after.user - cpu_before.user:.1f} s, "
           f"system {cpu_after.system - cpu_before.system:.1f} s")
    yield (f"peak memory: {memory.peak_mb:,.0f} MB for this process and its render workers "
           f"together (their resident sizes summed); this process alone (max RSS) "
           f"{own_peak_mb:,.0f} MB")
    yield (f"I/O floor: reading the source {floor.read:.1f} s + writing the outputs' "
           f"{floor.files} Parquet files ({floor.bytes / 2**20:,.0f} MB) {floor.write:.1f} s "
           f"= {floor.total:.1f} s; the build without pages took {total:.1f} s = "
           f"{total / floor.total:.1f}× the floor")
    read_s = sum(seconds["read"] for seconds in alone)
    work = {name: sum(seconds[name] for seconds in alone) for name in ("score", "shape",
                                                                        "children")}
    yield (f"score + shape alone, {events:,} events read back from the run's Parquet on "
           f"{workers} workers: {alone_s:.1f} s wall ({events / alone_s:,.0f} events/s); "
           f"thread time: read {read_s:.1f} s, score {work['score']:.1f} s, shape "
           f"{work['shape']:.1f} s, children's header facts {work['children']:.1f} s")
    table, entries = event_reconciliation(outcomes)
    yield f"{entries['entries']:,} entries; " + quality_line(
        quality_report(header, entries, table))
    yield ("rendering, from the run's Parquet: " + site_line(site.summary())
           + f"; peak memory while rendering {memory.stage_peaks['render']:,.0f} MB, this "
           "process and its workers together")


@dataclass(frozen=True)
class Floor:
    """What reading and writing alone take: the least a build could take."""

    read: float   # seconds to read the source tables, as the build reads them
    write: float  # seconds to write the build's Parquet outputs with pyarrow
    files: int
    bytes: int

    @property
    def total(self) -> float:
        return self.read + self.write


def io_floor(database: Path, outputs: Path, workers: int) -> Floor:
    """The I/O floor of a build: the time to only read the source tables (`read_source`,
    on `workers` threads, the file cached as for the build) plus the time to only write,
    with pyarrow on `workers` threads, the Parquet files of the datasets the timed build
    wrote under `outputs` (its events and chronology partitions), read into memory
    first, untimed."""
    _read_through(database)
    clock = time.perf_counter()
    raw = read_source(source_url(database), TABLES, None, workers)
    read_s = time.perf_counter() - clock
    del raw
    files = sorted(path for dataset in ("events", "chronology")
                   for path in (outputs / dataset).rglob("*.parquet"))
    tables = [(path.relative_to(outputs), pq.read_table(path)) for path in files]
    with tempfile.TemporaryDirectory(dir=outputs.parent) as target, \
            ThreadPoolExecutor(max_workers=workers) as pool:
        for name, _ in tables:
            (Path(target) / name).parent.mkdir(parents=True, exist_ok=True)
        clock = time.perf_counter()
        list(pool.map(lambda item: pq.write_table(item[1], Path(target) / item[0]), tables))
        write_s = time.perf_counter() - clock
        size = sum((Path(target) / name).stat().st_size for name, _ in tables)
    return Floor(read=read_s, write=write_s, files=len(files), bytes=size)


def _read_through(path: Path) -> None:
    """Read a file once, untimed, so that each timed run finds the source database in
    the page cache: the kernel here drops file pages left idle for a minute, so a run
    would otherwise read the disk or not depending on how long the run before it took."""
    with path.open("rb") as file:
        while file.read(1 << 24):
            pass


def _timed_build(options: dict, api_url: str, results) -> None:
    """One flow run in this (fresh) process against the Prefect server at `api_url`,
    timed as Prefect times a flow run: from the call, with chronology and its libraries
    imported, as a deployment's process has them before the run starts (Great
    Expectations is imported by the run, when it validates)."""
    os.environ["PREFECT_API_URL"] = api_url  # before Prefect is imported
    from flows.build import build_chronologies

    clock, processor = time.perf_counter(), _processor_seconds()
    manifest = build_chronologies(**options)
    results.send({"seconds": time.perf_counter() - clock,
                  "processor": _processor_seconds() - processor, "peak_mb": _peak_mb(),
                  **{key: manifest[key] for key in ("children", "carried_over",
                                                    "rebuilt_because", "timings_seconds")}})


def _in_own_process(options: dict, api_url: str, run: Callable = _timed_build) -> dict:
    """`run` (`_timed_build`, or any function a new interpreter can import by name) in a
    new interpreter, as each flow run of the nightly deployment (and each `chronology
    build`) runs in a process of its own. The result comes back through a pipe: a
    queue's semaphores outlive a spawned process and make multiprocessing warn of a
    leak at exit."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(target=run, args=(options, api_url, sender))
    try:
        process.start()
        sender.close()  # the run holds its own end: when it ends, the pipe says so
        while not receiver.poll(5):
            if not process.is_alive() and not receiver.poll(1):
                break
        else:
            try:
                result = receiver.recv()
            except (EOFError, OSError):  # the run ended before its whole result was sent
                pass
            else:
                process.join(timeout=60)  # it ends its own way (Prefect sends its last logs)
                return result
        process.join()
        raise RuntimeError("a benchmark run failed (exit code "
                           f"{process.exitcode}); its output says why")
    finally:
        sender.close()
        if process.is_alive():  # the benchmark was interrupted: so is the run
            process.terminate()
        if process.pid is not None:
            process.join()
        receiver.close()


def run_rerun_benchmark(database: Path, children: int, seed: int, shards: int, workers: int,
                        out: Path, changed_share: float = 0.01) -> Iterator[str]:
    """Time the flow itself (Prefect included) on a copy of the benchmark database: a
    full build, a rerun with no source change, a rerun after the records of
    `changed_share` of the children changed, and the next night's run (the as-of date a
    day later, records unchanged); each rerun as a share of the full build's time.

    Each run is a process of its own, against one Prefect server that stands for all
    four, as the nightly deployment runs each flow run against a standing server."""
    import shutil

    from prefect.server.api.server import SubprocessASGIServer

    path, how = _database(database, children, seed)
    yield f"database: {path} ({children:,} children, seed {seed}), {how}"
    source = out / "source.sqlite"
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(path, source)
    site = out / "out"
    shutil.rmtree(site, ignore_errors=True)
    server = SubprocessASGIServer()
    server.start(timeout=90)
    try:
        yield from _timed_runs(source, site, shards, workers, changed_share, server.api_url)
    finally:
        server.stop()


def _timed_runs(source: Path, site: Path, shards: int, workers: int, changed_share: float,
                api_url: str) -> Iterator[str]:
    import sqlite3

    day = pd.Timestamp(DEMO_AS_OF)
    seconds: dict[str, float] = {}
    worked: dict[str, float] = {}  # processor seconds

    def timed(label: str, **options) -> Iterator[str]:
        _read_through(source)
        # Each run starts with the disk written: the run before it left a few GB of pages
        # and Parquet still being written out, which a nightly run, a day after the last,
        # does not find.
        os.sync()
        run = _in_own_process({"source": str(source), "out": str(site), "shards": shards,
                               "workers": workers, **options}, api_url)
        seconds[label], worked[label] = run["seconds"], run["processor"]
        reused = (run["carried_over"] or {}).get("children", 0)

        def share(measured: dict[str, float], whose: str) -> str:
            return "" if label == "full build" else \
                f" = {measured[label] / measured['full build']:.1%} of the full build{whose}"

        wall_share, processor_share = share(seconds, ""), share(worked, "'s")
        yield (f"{label:<34}{seconds[label]:>8.1f} s{wall_share}; {run['children']:,} children "
               f"built, {reused:,} reused")
        yield (f"    processor time {worked[label]:.1f} s{processor_share}; peak memory "
               f"(max RSS) {run['peak_mb']:,.0f} MB")
        if run["rebuilt_because"]:
            yield "    built because: " + "; ".join(
                f"{reason} {count:,}" for reason, count in run["rebuilt_because"].items())
        stages = ", ".join(f"{name} {value:.1f}" for name, value
                           in run["timings_seconds"].items()
                           if not name.startswith("thread."))
        yield f"    stages (s): {stages}"

    yield from timed("full build", as_of=str(day.date()), full=True)
    yield from timed("rerun, no change", as_of=str(day.date()))
    with sqlite3.connect(source) as db:
        people = [row[0] for row in db.execute(
            "select pers_person_id from ssd_person order by pers_person_id")]
        chosen = people[::max(1, round(1 / changed_share))]
        db.execute("create temp table chosen (person_id text primary key)")
        db.executemany("insert into chosen values (?)", [(child,) for child in chosen])
        # One pass over the notes (their person id has no index).
        db.execute(
            "update ext_case_notes set casn_note_text = casn_note_text || ' (amended)' "
            "where casn_case_note_id in (select min(casn_case_note_id) from ext_case_notes "
            "join chosen on casn_person_id = person_id group by casn_person_id)")
    yield f"changed one case note of each of {len(chosen):,} children ({changed_share:.0%})"
    yield from timed(f"rerun, {changed_share:.0%} changed", as_of=str(day.date()))
    yield from timed("next night, no change", as_of=str((day + pd.Timedelta(days=1)).date()))
