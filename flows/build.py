"""The main flow: extract → fingerprint children and choose those to build → prepare →
validate each table → per shard: stage, validate, score, shape, validate, write → write
the run's tables → carry over the children not built → render → manifest → publish.

The flow reads like the list of stages; the work is in `transforms/` and `flows/steps.py`.
"""

from __future__ import annotations

import shutil
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from secrets import token_hex

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_link_artifact, create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from flows import sinks, verdicts
from flows.carry import (
    Carried,
    Carry,
    CarryError,
    PagesAhead,
    Taken,
    nothing_made,
    pages_ahead,
)
from flows.cli import DEFAULT_KEEP, DEFAULT_MAX_REJECT_SHARE, DEFAULT_SHARDS
from flows.incremental import (
    FINGERPRINTS,
    Reuse,
    check_choice,
    code_digest,
    nothing_reused,
    plan_reuse,
    requested_children,
    rows_to_build,
    stamps,
)
from flows.publish import clean_up, exclusive, mark_published
from flows.runners import from_environment, on_cluster
from flows.site import SiteReport, render_site
from flows.source import SourceSchemaError, read_source_parts, safe_url, source_url
from flows.steps import (
    NO_ENTRIES,
    FreedMemoryKept,
    Laps,
    Made,
    ShardOutcome,
    TableOutcome,
    build_in_passes,
    give_back_freed_memory,
    stage_and_write_unit,
    validate_table,
    what_lives_on_set_aside,
)
from flows.validation import SuiteRunner
from transforms.fingerprint import SourceFacts, source_facts
from transforms.pages import RunInfo
from transforms.parts import SourceRead
from transforms.prepare import Marked, Prepared, known_ids, mark_source
from transforms.reconcile import (
    check_balanced,
    check_events_balanced,
    event_problems,
    event_reconciliation,
    quality_report,
    reconciliation,
    run_record,
    run_summary,
)
from transforms.rules import DEFAULT_RULES, Rules, load_rules
from transforms.shards import build_passes, table_batches
from transforms.ssd import TABLES, TABLES_BY_NAME

# Where a run keeps the source it read until it has marked the rows to build, and, in a
# run of several passes, the rows of each pass until it is built (inside its version, so
# that a killed run's are cleaned up with it).
SOURCE_PARTS = ".source"
PASSES = ".passes"


class RunFailed(RuntimeError):
    """The run finished but must not be published (too many rejects, say)."""


def _retry_transient(task, task_run, state) -> bool:
    """Retry reads that failed on the connection, not those the source cannot satisfy."""
    try:
        state.result()
    except (SourceSchemaError, ValueError):
        return False
    except Exception:  # noqa: BLE001 - any other failure of a read may be transient
        return True
    return False


@task(retries=3, retry_delay_seconds=[1, 5, 20], retry_condition_fn=_retry_transient,
      cache_policy=NO_CACHE)
def extract(source: str, children: list[str] | None, workers: int, version: Path
            ) -> SourceRead:
    folder = version / SOURCE_PARTS
    shutil.rmtree(folder, ignore_errors=True)  # what a failed try wrote
    return read_source_parts(source_url(source), TABLES, children, workers, folder)


@task(cache_policy=NO_CACHE)
def learn_source(read: SourceRead, as_of: pd.Timestamp, since: pd.Timestamp | None,
                 workers: int) -> SourceFacts:
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return source_facts(read, TABLES_BY_NAME, known_ids(read), as_of, since, pool.map)


@task(cache_policy=NO_CACHE)
def plan_incremental(out: Path, facts: SourceFacts, as_of: pd.Timestamp, rules_hash: str,
                     code: str, shards: int, full: bool) -> Reuse:
    return plan_reuse(out, facts.children, as_of, rules_hash, code, shards, full)


@task(cache_policy=NO_CACHE)
def mark_rows(read: SourceRead, children_of_rows: dict[str, pa.DictionaryArray],
              keep: dict[str, np.ndarray] | None, known: dict, shards: int, children: int,
              version: Path, workers: int) -> Marked:
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return mark_source(read, children_of_rows, known, shards,
                           build_passes(shards, children), version / PASSES, pool.map, keep)


@task(cache_policy=NO_CACHE)
def validate_source_tables(frames: dict[str, pd.DataFrame], births: pd.DataFrame,
                           known: dict, as_of: pd.Timestamp, runner: SuiteRunner,
                           shards: int, earlier: verdicts.Earlier
                           ) -> list[tuple[list[pd.DataFrame], TableOutcome]]:
    """Check `frames`, some of the prepared tables (only those go to a Dask worker)."""
    return [validate_table(name, frame, births, known, as_of, runner, shards, earlier)
            for name, frame in frames.items()]


@task(cache_policy=NO_CACHE)
def build_unit(unit: tuple[int, ...], kept: dict[str, pd.DataFrame], as_of: pd.Timestamp,
               runner: SuiteRunner, version: Path, rules: Rules, run_id: str, out: Path,
               shards: int) -> ShardOutcome:
    children = set().union(*(frame[TABLES_BY_NAME[name].child_column].dropna().unique()
                             for name, frame in kept.items()))
    first_seen = sinks.previous_first_seen(out, unit, shards, sorted(children))
    return stage_and_write_unit(unit, kept, as_of, runner, version, rules, run_id, shards,
                                first_seen)


@task(cache_policy=NO_CACHE)
def write_outputs(version: Path, made: Made, fingerprints: pd.DataFrame,
                  verdicts_from: Path | None, as_of: pd.Timestamp, run_id: str) -> None:
    for name, frame in (("rejects.parquet", made.rejects), ("findings.parquet", made.findings),
                        ("people.parquet", made.people), ("children.parquet", made.children),
                        ("periods.parquet", made.periods), (FINGERPRINTS, fingerprints)):
        sinks.write_ordered(frame, version, name)
    sinks.write_json({"results": made.validation, "rows": made.rows_checked},
                     version / "validation" / "results.json")
    verdicts.write_verdicts(version, verdicts_from, made.found, as_of, run_id)


@contextmanager
def _refused_carry():
    """A carry-over that cannot be done fails the run, saying why (nothing published)."""
    try:
        yield
    except CarryError as error:
        raise RunFailed(f"{error}; nothing was published.") from None


@task(cache_policy=NO_CACHE)
def start_carry(previous: Path, version: Path, taken: Taken, shards: int,
                rules_hash: str, ahead: PagesAhead | None = None) -> Carry:
    with _refused_carry():
        return Carry(previous, version, taken, shards, rules_hash, ahead)


@task(cache_policy=NO_CACHE)
def merge_carried_tables(carry: Carry) -> None:
    with _refused_carry():
        carry.merge_tables()


@task(cache_policy=NO_CACHE)
def finish_carry(carry: Carry) -> Carried:
    with _refused_carry():
        return carry.finish()


@task(cache_policy=NO_CACHE)
def render_pages(version: Path, shards: int, workers: int, rules: Rules, run: RunInfo,
                 only: frozenset[str] | None) -> SiteReport:
    return render_site(version, shards, workers, rules, run, only, on_cluster())


# Threads unless the environment asks for Dask (`flows/runners.py`), as the options of
# `chronology build` and `serve-nightly` do.
@flow(name="build-chronologies", log_prints=False, task_runner=from_environment())
def build_chronologies(
    source: str,
    out: str = "out",
    children: list[str] | None = None,
    shards: int = DEFAULT_SHARDS,
    workers: int = 2,
    as_of: str | None = None,
    max_reject_share: float = DEFAULT_MAX_REJECT_SHARE,
    rules: str | None = None,
    keep_versions: int = DEFAULT_KEEP,
    wait_seconds: float = 0,
    full: bool = False,
    since: str | None = None,
) -> dict:
    """Build the chronologies of every child (or `children`) of `source`.

    A run over the whole source rebuilds only the children whose outputs may have
    changed since the published output (`flows/incremental.py`) and takes the others
    from it; `full` rebuilds everyone, `since` (a date) also every child with a record
    dated on or after it. `rules` is the path of a rules file; the default is the one
    shipped with chronology. `keep_versions` published versions are kept. A run waits up
    to `wait_seconds` for another run writing the same `out` to finish, then fails
    without touching it.
    """
    logger = get_run_logger()
    # Absolute: the workers of a Dask cluster write into it from folders of their own.
    out = str(Path(out).resolve())
    rules_path = Path(rules) if rules else DEFAULT_RULES
    ruleset = load_rules(rules_path)
    started = datetime.now(UTC)
    run_id = started.strftime("%Y%m%dT%H%M%SZ") + "-" + token_hex(3)
    as_of_date = pd.Timestamp(as_of or started.date().isoformat()).normalize()
    children = requested_children(children)  # the deployment's parameter, as the CLI's
    check_choice(children, full, since)
    code = code_digest()  # what the next run compares its own with
    try:
        since_date = None if since is None else pd.Timestamp(since).normalize()
    except ValueError:
        raise ValueError(f"since {since!r} is not a date like 2026-03-31") from None
    data_as_of = as_of_date + pd.Timedelta(days=1) - pd.Timedelta(seconds=1)
    with exclusive(Path(out), run_id, wait_seconds), ExitStack() as background:
        # What killed or failed runs left behind goes first, while no one else can write.
        clean_up(Path(out), keep_versions)
        version = sinks.version_dir(Path(out), run_id)
        verdicts_from = verdicts.published(Path(out), code, full)
        # A run over the whole source will likely take most children from the published
        # output: their pages are linked while it reads.
        ahead = background.enter_context(pages_ahead(
            Path(out), version, shards, ruleset.digest, code)) if children is None and \
            not full else None
        lap = Laps()
        timings = lap.seconds

        # While the source is read and fingerprinted, freed memory is kept for reuse.
        kept = background.enter_context(FreedMemoryKept())
        read = extract(source, children, workers, version)
        try:
            rows_read = sum(read.rows(name) for name in read)
            lap("extract")
            logger.info("extracted %d tables, %d rows", len(read.parts), rows_read)

            facts = learn_source(read, data_as_of, since_date, workers)
            known, fingerprints, of_rows = facts.known, facts.children, facts.children_of_rows
            reuse = nothing_reused("a run for some children", 0)
            if children is None:
                reuse = plan_incremental(Path(out), facts, data_as_of, ruleset.digest, code,
                                         shards, full)
            del facts
            keep = rows_to_build(of_rows, reuse.children)
            carrying = None
            if reuse.children:
                # The children taken are carried over while the others are built.
                carrying = background.enter_context(start_carry(
                    reuse.previous, version, Taken(taken=reuse.children), shards,
                    ruleset.digest, ahead))
            elif ahead is not None:  # no child is taken: no page linked ahead may stay
                ahead.discard()
            # What the run accounts for: the rows of the children it builds.
            extracted = {name: read.rows(name) if keep is None else int(keep[name].sum())
                         for name in read}
            lap("fingerprint")
            to_build = len(fingerprints) - len(reuse.children)
            logger.info("%d children unchanged since the published output, %d to build",
                        len(reuse.children), to_build)
            kept.close()  # what marking makes lives into the passes
            marked = None
            if carrying is None or to_build:
                marked = mark_rows(read, of_rows, keep, known, shards, to_build, version,
                                   workers)
        finally:  # what a pass needs is in `marked`, or on disk
            read.discard()
        del read, of_rows, keep

        if marked is None:
            # Every child is taken from the published output: nothing to prepare, check,
            # shape or render, and the run's own tables are empty.
            tables, shard_outcomes = [], []
            made = nothing_made(reuse.previous, version, shards)
        else:
            lap("prepare")

            runner = SuiteRunner()
            earlier = verdicts.earlier(verdicts_from, data_as_of)

            def validate(prepared: Prepared) -> list:
                return [table for f in [validate_source_tables.submit(
                    {name: prepared.frames[name] for name in names}, prepared.births,
                    prepared.known, data_as_of, runner, shards, earlier)
                    for names in table_batches({name: len(frame) for name, frame
                                                in prepared.frames.items()}, workers)]
                    for table in f.result()]

            def build(units: list[tuple[int, ...]], parts: list[dict]) -> list[ShardOutcome]:
                return [f.result() for f in [build_unit.submit(
                    unit, part, data_as_of, runner, version, ruleset, run_id, Path(out),
                    shards) for unit, part in zip(units, parts, strict=True)]]

            with what_lives_on_set_aside():
                try:
                    tables, shard_outcomes = build_in_passes(marked, shards, to_build,
                                                             validate, build, lap)
                finally:  # a failed run's are not left to the next run to clean up
                    marked.discard()
                made = Made.of(marked.rejects, tables, shard_outcomes)
                del marked
                give_back_freed_memory()  # before the render workers start beside it

        rejects, findings, people, children_table = (made.rejects, made.findings, made.people,
                                                     made.children)
        freshness = stamps(fingerprints, reuse.children, made.freshness, as_of_date)
        write_outputs(version, made, freshness, verdicts_from, data_as_of, run_id)
        lap("write")

        # A run that built only some children takes every other child from the published
        # output, so that its version is whole and can be published in turn.
        published = (Path(out) / sinks.CURRENT / "manifest.json").exists()
        built = frozenset(children_table["child_id"])
        carried = None
        if children is not None and published and built:
            # Every child asked for is replaced: one no longer in the source leaves.
            carrying = background.enter_context(start_carry(
                (Path(out) / sinks.CURRENT).resolve(), version,
                Taken(replaced=built | set(children)), shards, ruleset.digest))
        if carrying is not None:
            merge_carried_tables(carrying)
            lap("carry")

        # Pages are rendered while the partitions and pages of the children carried over
        # may still be on their way (their threads use the core rendering leaves idle).
        site = render_pages(version, shards, workers, ruleset, RunInfo(
            run_id=run_id, generated_at=started, as_of=as_of_date, rules_hash=ruleset.digest,
            marks_new=published), only=built if carrying is not None else None)
        lap("render")
        if carrying is not None:
            carried = finish_carry(carrying)
            lap("carry_wait")
        for seconds_of in [*(o.seconds for o in [*tables, *shard_outcomes]),
                           carried.seconds if carried else {}]:
            for name, seconds in seconds_of.items():
                timings[f"thread.{name}"] = timings.get(f"thread.{name}", 0.0) + seconds

        counts = reconciliation(extracted, shard_outcomes, rejects)
        event_counts, entry_counts = event_reconciliation(shard_outcomes)
        entry_counts = {**NO_ENTRIES, **entry_counts}  # zeros where no unit made any
        summary = run_summary(counts, rejects, findings, people, children, max_reject_share,
                              whole_output=children is None or carried is not None,
                              events_balanced=not event_problems(event_counts, entry_counts),
                              carried=0 if carried is None else carried.children,
                              whole_source=None if children is not None or carried is None
                              else (pq.read_metadata(version / "rejects.parquet").num_rows,
                                    rows_read))
        manifest = {
            "run_id": run_id,
            "started_at": started.isoformat(),
            "finished_at": datetime.now(UTC).isoformat(),
            "source": safe_url(source_url(source)),
            "data_as_of": as_of_date.date().isoformat(),
            "version": str(version),
            "shards": shards,
            "rules": {"path": str(rules_path), "hash": ruleset.digest},
            # What the next run compares its own code with: a version holding children
            # carried from an output built by other code (a run for some children after
            # an upgrade) was not built by this code alone, and the next run over the
            # whole source rebuilds everyone.
            "code": code if carried is None or carried.from_code == code
            else f"{code} with children built by {carried.from_code}",
            **summary,
            "chronology": {
                **{k: v for k, v in entry_counts.items() if k != "no_reason"},
                "events": event_counts.to_dict(orient="records"),
                "filtered_by_rule": _filtered_by_rule(made.filtered),
            },
            "quality": quality_report(children_table, entry_counts, event_counts),
            "carried_over": None if carried is None else {
                "from_run": carried.from_run, "children": carried.children},
            "rebuilt_because": reuse.rebuilt_because,
            "rows_read": rows_read,
            # Source rows validated, and those of them whose checked values were judged in
            # an earlier run and not put to GX again (`flows/verdicts.py`).
            "source_validation": {
                "rows": sum(table["rows"] for table in made.rows_checked),
                "judged_before": sum(table["judged_before"] for table in made.rows_checked)},
            "site": {"path": str(version / "site"), **site.summary()},
            "timings_seconds": {k: round(v, 3) for k, v in timings.items()},
            "versions": _versions(),
        }
        sinks.write_json(manifest, version / "manifest.json")
        _record_in_prefect(manifest, version)
        check_balanced(counts)
        check_events_balanced(event_counts, entry_counts)
        _fail_unless_publishable(manifest, version)
        if manifest["published"]:
            sinks.make_current(Path(out), run_id)
            mark_published(version)
            clean_up(Path(out), keep_versions)
    logger.info("run %s: %d rows in, %d rejected, %d events", run_id, manifest["rows_in"],
                manifest["rows_rejected"], manifest["events"])
    return manifest


def _record_in_prefect(manifest: dict, version: Path) -> None:
    """The run's summary and a link to its pages, as artifacts on the flow run."""
    create_markdown_artifact(key="chronology-run", markdown=run_record(manifest),
                             description="What the run read, rejected, built and published")
    create_link_artifact(key="chronology-pages", link=(version / "site" / "index.html"
                                                       ).resolve().as_uri(),
                         link_text="The children's chronologies (index)",
                         description="The pages this run wrote; once published, also at "
                         "OUT/current/site/index.html")


def _fail_unless_publishable(manifest: dict, version: Path) -> None:
    if manifest["children_requested"] and not manifest["children"]:
        raise RunFailed(f"none of the {len(manifest['children_requested'])} children asked "
                        "for is in the source; nothing was published.")
    if manifest["status"] != "succeeded":
        raise RunFailed(
            f"{manifest['reject_share_of']['rejected']:,} of "
            f"{manifest['reject_share_of']['rows']:,} source rows "
            f"({manifest['reject_share']:.2%}) were rejected, more than the "
            f"{manifest['max_reject_share']:.2%} allowed; nothing was published. "
            f"See {version / 'rejects.parquet'} and {version / 'manifest.json'}.")


def _filtered_by_rule(filtered: pd.DataFrame) -> list[dict]:
    if filtered.empty:
        return []
    return (filtered.groupby(["rule", "reason"], as_index=False)["events"].sum()
            .to_dict(orient="records"))


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in ("chronology", "prefect", "great-expectations", "pandas", "pyarrow"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "not installed"
    return found
