"""The `chronology` command line."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click

# Kept here rather than imported from flows.build, which imports Prefect (seconds).
# A unit of work holds at least one shard's children, and memory in proportion: 16
# shards keep a 100,000-child council's units near 6,000 children (measured with
# `chronology bench`: its passes peak under 3.5 GB, against 4.0-4.4 GB with 8 shards).
# A larger source wants about one shard per 6,000 children (`--shards`).
DEFAULT_SHARDS = 16
DEFAULT_MAX_REJECT_SHARE = 0.02
DEFAULT_KEEP = 3
DEFAULT_CRON = "0 2 * * *"
DEFAULT_TIMEZONE = "Europe/London"
DEMO_DATABASE = Path("demo") / "ssd-demo.sqlite"
DEMO_CHILDREN = 2000
DEMO_SEED = 42
# Where a run's tasks run, and the environment variables that say so to a run that
# imports the flow afresh (`flows/runners.py`).
RUNNERS = ("threads", "dask")
RUNNER_VARIABLE = "CHRONOLOGY_RUNNER"
DASK_ADDRESS_VARIABLE = "CHRONOLOGY_DASK_ADDRESS"


def _quiet_prefect() -> None:
    """Settings for a machine with no internet and no standing Prefect server."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")
    # The command prints its own summary and a one-line reason when a run fails; Prefect's
    # own log (with tracebacks) is one environment variable away for whoever needs it.
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "CRITICAL")
    os.environ.setdefault("PREFECT_SERVER_LOGGING_LEVEL", "CRITICAL")


def _children(value: str | None) -> list[str] | None:
    from flows.incremental import requested_children

    try:
        return requested_children(None if value is None else value.split(","))
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--children") from None


@contextmanager
def _bad_input_exits_1() -> Iterator[None]:
    try:
        yield
    except click.UsageError as error:  # an unknown option, a value that is not a date...
        error.exit_code = 1
        raise


class _Commands(click.Group):
    """Bad usage is bad input like any other: exit code 1 with click's message (click
    says 2), so that 2 says only that chronology itself failed (README, "Command
    line")."""

    def make_context(self, *args, **kwargs) -> click.Context:
        with _bad_input_exits_1():
            return super().make_context(*args, **kwargs)

    def invoke(self, ctx: click.Context):
        with _bad_input_exits_1():
            return super().invoke(ctx)


@click.group(cls=_Commands)
def main() -> None:
    """Coherent chronologies of children's lives from social care case records."""


@main.command("demo-data")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--children", default=DEMO_CHILDREN, show_default=True, type=click.IntRange(1),
              help="Number of synthetic children.")
@click.option("--seed", default=DEMO_SEED, show_default=True, type=int,
              help="Random seed: the same seed gives the same database.")
@click.option("--bad-rate", default=0.005, show_default=True, type=click.FloatRange(0, 0.5),
              help="Share of rows made bad in the ways real extracts are.")
@click.option("--no-case-notes", is_flag=True,
              help="Leave out the case-note extension table, as in a plain SSD deployment.")
def demo_data(path: Path, children: int, seed: int, bad_rate: float, no_case_notes: bool) -> None:
    """Write a synthetic SSD database (SQLite) of N children to PATH."""
    from fixtures.generator import generate_database

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        report = generate_database(path, children=children, seed=seed, bad_rate=bad_rate,
                                   case_notes=not no_case_notes)
    except Exception as error:  # noqa: BLE001 - the file system or SQLite said no
        raise click.FileError(str(path), hint=str(error)) from None
    total = sum(report.rows.values())
    click.echo(f"wrote {path}: {children:,} children, {total:,} rows in {len(report.rows)} tables, "
               f"{len(report.injected):,} bad records injected, in {report.seconds:.1f} s")
    for kind, count in report.injected["kind"].value_counts().sort_index().items():
        click.echo(f"  {kind:<22} {count:>8,}")


def _runner_options(command):
    """`--runner` and `--dask-address`, which the environment may set too."""
    command = click.option(
        "--dask-address", envvar=DASK_ADDRESS_VARIABLE, show_envvar=True,
        help="Scheduler of a Dask cluster (tcp:// or tls://host:8786): the run's work goes "
        "to its workers, which must reach the output folder at the same path and the "
        "Prefect server at PREFECT_API_URL.")(command)
    return click.option(
        "--runner", type=click.Choice(RUNNERS), envvar=RUNNER_VARIABLE, show_envvar=True,
        help="Where the checks of tables, the units of shards and the pages run: threads "
        "of this process, or a Dask cluster (at --dask-address, or else a local one of "
        "--workers processes started for each run; of two for serve-nightly's runs). "
        "Default: dask with --dask-address, else threads.")(command)


def _run_on(runner: str | None, dask_address: str | None, workers: int):
    """The task runner the options ask for, also put in the environment for the flow
    (`flows/runners.py`). A Dask scheduler or Prefect server the workers cannot reach is
    said now, in a line, not by a run that fails after waiting for them."""
    from flows.runners import check_prefect_reachable, check_scheduler, choose, task_runner

    try:
        choose(runner, dask_address)
        on = task_runner(runner, dask_address, workers)
    except ValueError as error:
        raise click.UsageError(str(error)) from None
    if dask_address:
        try:
            check_scheduler(dask_address)
            check_prefect_reachable(dask_address, os.environ.get("PREFECT_API_URL"))
        except ConnectionError as error:
            click.echo(f"error: {error}", err=True)
            sys.exit(1)
    return on


@main.command()
@click.option("--source", help="SQLAlchemy URL or SQLite path. Default: the bundled demo "
              f"database {DEMO_DATABASE}, generated if absent.")
@click.option("--out", default="out", show_default=True, type=click.Path(file_okay=False),
              help="Output folder; each run writes OUT/versions/<run-id> and points "
              "OUT/current at it.")
@click.option("--children", help="Comma-separated child ids: build just these.")
@click.option("--shards", default=DEFAULT_SHARDS, show_default=True,
              type=click.IntRange(1, 4096), help="Shards of children, processed independently; "
              "about one per 6,000 children keeps memory in bounds.")
@click.option("--workers", default=2, show_default=True, type=click.IntRange(1, 64),
              help="Threads for reading tables and building shards; processes for rendering "
              "pages.")
@click.option("--as-of", "as_of", help="Date the data is as of (YYYY-MM-DD). Default: today "
              "(for the bundled demo database, the day its records run up to).")
@click.option("--max-reject-share", default=DEFAULT_MAX_REJECT_SHARE, show_default=True,
              type=click.FloatRange(0, 1), help="Fail the run if a larger share of source rows "
              "is rejected.")
@click.option("--rules", "rules_file", type=click.Path(dir_okay=False),
              help="Rules file (significance, escalations, merging, visit standards). "
              "Default: the one shipped with chronology (transforms/rules.yml).")
@click.option("--keep", "keep_versions", default=DEFAULT_KEEP, show_default=True,
              type=click.IntRange(1), help="Published versions to keep in OUT/versions.")
@click.option("--wait", "wait_seconds", default=0, show_default=True,
              type=click.FloatRange(0), help="Seconds to wait for another run writing the "
              "same OUT to finish; then stop without touching it.")
@click.option("--full", is_flag=True, help="Rebuild every child, even those whose records "
              "did not change since the published output.")
@click.option("--since", help="Also rebuild every child with a record dated on or after "
              "this date (YYYY-MM-DD), changed or not.")
@_runner_options
def build(source: str | None, out: str, children: str | None, shards: int, workers: int,
          as_of: str | None, max_reject_share: float, rules_file: str | None,
          keep_versions: int, wait_seconds: float, full: bool, since: str | None,
          runner: str | None, dask_address: str | None) -> None:
    """Run the main flow: extract, validate, stage, score and shape the source into
    per-child chronologies, and render a page for each child.

    Children whose records, rules and dates are as they were for the published output
    are taken from it unchanged; --full rebuilds everyone."""
    source, as_of = _source_and_as_of(source, as_of)
    _quiet_prefect()
    on = _run_on(runner, dask_address, workers)  # before the flow's import, which reads it
    from flows.build import RunFailed, build_chronologies
    from flows.incremental import check_choice
    from flows.publish import OutputBusy
    from flows.source import SourceSchemaError
    from transforms.rules import RulesError, load_rules

    wanted = _children(children)
    try:
        # A rules file with a mistake is told in a second, naming the line.
        load_rules(rules_file) if rules_file else load_rules()
        for day, option in ((as_of, "--as-of"), (since, "--since")):
            if day is not None:
                _date(day, option)
        try:
            check_choice(wanted, full, since)
        except ValueError as error:
            raise click.UsageError(str(error)) from None
        source = _checked_source(source)
        click.echo("building: starting Prefect and reading the source…")
        manifest = build_chronologies.with_options(task_runner=on)(
            source=source, out=out, children=wanted, shards=shards,
            workers=workers, as_of=as_of, max_reject_share=max_reject_share,
            rules=rules_file, keep_versions=keep_versions, wait_seconds=wait_seconds,
            full=full, since=since)
    except (SourceSchemaError, RunFailed, ConnectionError, RulesError, OutputBusy) as error:
        click.echo(f"error: {error}", err=True)
        sys.exit(1)
    except click.ClickException:
        raise
    except Exception as error:  # noqa: BLE001 - a fault of ours: say so, briefly
        click.echo(f"error: the run failed unexpectedly ({type(error).__name__}: {error}). "
                   "Nothing was published. Run again with PREFECT_LOGGING_LEVEL=INFO "
                   "for the full log.", err=True)
        sys.exit(2)
    _print_summary(manifest, Path(out))


def _source_and_as_of(source: str | None, as_of: str | None) -> tuple[str, str | None]:
    """The source to read and the day it is as of: with no source, the bundled demo
    database (made if absent), whose records run up to a fixed day."""
    if source is not None:
        return source, as_of
    from fixtures.generator import DEMO_AS_OF

    if not DEMO_DATABASE.exists():
        click.echo(f"no demo database yet: generating {DEMO_DATABASE} "
                   f"({DEMO_CHILDREN:,} children)")
        from fixtures.generator import generate_database

        DEMO_DATABASE.parent.mkdir(parents=True, exist_ok=True)
        generate_database(DEMO_DATABASE, children=DEMO_CHILDREN, seed=DEMO_SEED)
    # "As of" today would show every open case of the demo as months without a visit.
    return str(DEMO_DATABASE.resolve()), as_of or DEMO_AS_OF.isoformat()


def _checked_source(source: str) -> str:
    """The source, checked to hold every table before Prefect starts (a wrong path or a
    missing table is the commonest mistake and deserves a plain answer in a second), with
    its password moved out of the URL into the environment, where the runs (in this
    process or its children) find it and Prefect, which stores parameters, never sees it."""
    from flows.source import PASSWORD_VARIABLE, present_tables, source_url, without_password
    from transforms.ssd import TABLES

    present_tables(source_url(source), TABLES)
    source, password = without_password(source)
    if password is not None:
        os.environ[PASSWORD_VARIABLE] = password
    return source


def _print_chronology(manifest: dict) -> None:
    from transforms.reconcile import quality_line

    made = manifest["chronology"]
    events = made["events"]
    kept = sum(r["entry"] for r in events)
    merged = sum(r["merged"] for r in events)
    collapsed = sum(r["collapsed"] for r in events)
    left_out = sum(r["filtered"] for r in events)
    click.echo(f"chronology (rules {manifest['rules']['hash']}): {made['entries']:,} entries "
               f"({made['key']:,} key, {made['significant']:,} significant, "
               f"{made['context']:,} context; {made['summaries']:,} summaries, "
               f"{made['gaps']:,} visit gaps)")
    click.echo(f"events: {kept + merged + collapsed + left_out:,} in = {kept:,} heading an "
               f"entry + {merged:,} merged + {collapsed:,} counted in summaries + "
               f"{left_out:,} left out by rule")
    click.echo(quality_line(manifest["quality"]))


def _date(value: str, option: str) -> None:
    from datetime import date

    try:
        date.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a date like 2026-03-31",
                                 param_hint=option) from None


def _print_summary(manifest: dict, out: Path) -> None:
    from flows.site import site_line

    click.echo(f"run {manifest['run_id']}: {manifest['status']}")
    if manifest["children"] or not manifest["carried_over"]:
        click.echo(f"{'table':<28}{'rows in':>10}{'staged':>10}{'rejected':>10}{'events':>10}")
        for row in manifest["tables"]:
            click.echo(f"{row['table']:<28}{row['rows_in']:>10,}{row['rows_staged']:>10,}"
                       f"{row['rows_rejected']:>10,}{row['events']:>10,}")
        click.echo(f"{manifest['children']:,} children built, {manifest['events']:,} events; "
                   f"{manifest['rows_rejected']:,} rows rejected; "
                   f"{sum(f['rows'] for f in manifest['findings']):,} rows kept with findings")
        _print_chronology(manifest)
        click.echo(site_line(manifest["site"]))
    else:
        click.echo(f"no child's records, dates or rules changed: nothing to build "
                   f"({manifest['rows_read']:,} source rows read)")
    click.echo(f"{manifest['reject_share']:.2%} of the output's "
               f"{manifest['reject_share_of']['rows']:,} source rows rejected")
    if manifest["carried_over"]:
        click.echo(f"carried over unchanged from run {manifest['carried_over']['from_run']}: "
                   f"{manifest['carried_over']['children']:,} other children")
    if manifest["rebuilt_because"]:
        click.echo("children built because: " + "; ".join(
            f"{reason} {count:,}" for reason, count in manifest["rebuilt_because"].items()))
    if manifest["published"]:
        click.echo(f"outputs: {out / 'current'}; pages: {out / 'current' / 'site' / 'index.html'}")
    else:
        click.echo(f"outputs: {manifest['version']} (a run for some children, with no "
                   f"published output to add them to; {out / 'current'} is unchanged)")
    if manifest["children_not_found"]:
        click.echo(f"not in the source: {', '.join(manifest['children_not_found'])}")


@main.command("serve-nightly")
@click.option("--source", help="SQLAlchemy URL or SQLite path. Default: the bundled demo "
              f"database {DEMO_DATABASE}, generated if absent.")
@click.option("--out", default="out", show_default=True, type=click.Path(file_okay=False),
              help="Output folder the nightly runs publish to.")
@click.option("--cron", default=DEFAULT_CRON, show_default=True,
              help="When to run, as a cron expression.")
@click.option("--timezone", default=DEFAULT_TIMEZONE, show_default=True,
              help="Time zone of the cron expression (IANA name).")
@click.option("--shards", default=DEFAULT_SHARDS, show_default=True,
              type=click.IntRange(1, 4096), help="Shards of children, processed independently; "
              "about one per 6,000 children keeps memory in bounds.")
@click.option("--workers", default=2, show_default=True, type=click.IntRange(1, 64),
              help="Threads for reading tables and building shards; processes for rendering "
              "pages.")
@click.option("--keep", "keep_versions", default=DEFAULT_KEEP, show_default=True,
              type=click.IntRange(1), help="Published versions to keep in OUT/versions.")
@_runner_options
def serve_nightly(source: str | None, out: str, cron: str, timezone: str, shards: int,
                  workers: int, keep_versions: int, runner: str | None,
                  dask_address: str | None) -> None:
    """Serve the flow as the Prefect deployment `build-chronologies/nightly` on a schedule,
    against the Prefect server at PREFECT_API_URL, until stopped (Ctrl-C)."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise click.BadParameter(f"{timezone!r} is not a time zone like Europe/London",
                                 param_hint="--timezone") from None
    if not os.environ.get("PREFECT_API_URL"):
        click.echo("error: serve-nightly needs a standing Prefect server, which keeps the "
                   "schedule and starts the runs. Start one with `prefect server start`, "
                   "then set PREFECT_API_URL=http://127.0.0.1:4200/api (see the README).",
                   err=True)
        sys.exit(1)
    source, as_of = _source_and_as_of(source, None)
    _quiet_prefect()
    # Each run is a process of its own that imports the flow afresh: the runner reaches
    # it through the environment.
    _run_on(runner, dask_address, workers)
    from prefect.schedules import Cron

    from flows.deployment import serve
    from flows.source import SourceSchemaError

    try:  # a wrong source is said now, not at two in the morning
        source = _checked_source(source)
    except (SourceSchemaError, ConnectionError) as error:
        click.echo(f"error: {error}", err=True)
        sys.exit(1)
    try:
        Cron(cron, timezone=timezone)
    except ValueError as error:  # a cron expression Prefect cannot read
        raise click.BadParameter(str(error), param_hint="--cron") from None
    click.echo(f"serving build-chronologies/nightly: {cron} ({timezone}), "
               f"writing {Path(out).resolve()}; Ctrl-C stops it")
    serve(source=source, out=str(Path(out).resolve()), as_of=as_of, shards=shards,
          workers=workers, keep_versions=keep_versions, cron=cron, timezone=timezone)


# What both benchmarks take: the generated database and how the work is cut.
_BENCH_OPTIONS = (
    click.option("--children", default=100_000, show_default=True, type=click.IntRange(1)),
    click.option("--seed", default=DEMO_SEED, show_default=True, type=int),
    click.option("--database", type=click.Path(dir_okay=False, path_type=Path),
                 default=Path("demo") / "bench-ssd.sqlite", show_default=True,
                 help="Where the benchmark database is generated (reused if present for "
                 "the same size and seed; bench-reruns changes only a copy of it)."),
    click.option("--shards", default=DEFAULT_SHARDS, show_default=True,
                 type=click.IntRange(1, 4096)),
    click.option("--workers", default=2, show_default=True, type=click.IntRange(1, 64)),
)


def _bench_options(command):
    for option in reversed(_BENCH_OPTIONS):
        command = option(command)
    return command


@main.command()
@_bench_options
def bench(children: int, seed: int, database: Path, shards: int, workers: int) -> None:
    """Generate N children and time extract, stage and validate: rows/s and peak memory."""
    from flows.bench import run_benchmark

    for line in run_benchmark(database, children, seed, shards, workers):
        click.echo(line)
        sys.stdout.flush()


@main.command("bench-reruns")
@_bench_options
@click.option("--out", default=Path("bench-reruns"), show_default=True,
              type=click.Path(file_okay=False, path_type=Path),
              help="Folder for the copy of the database and the runs' outputs.")
def bench_reruns(children: int, seed: int, database: Path, shards: int, workers: int,
                 out: Path) -> None:
    """Time a full build, then reruns: with no change, with 1% of children changed, and
    the next night's. Each rerun is given as a share of the full build's time."""
    _quiet_prefect()
    from flows.bench import run_rerun_benchmark

    for line in run_rerun_benchmark(database, children, seed, shards, workers, out):
        click.echo(line)
        sys.stdout.flush()


if __name__ == "__main__":
    main()
