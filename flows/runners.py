"""Where a run's tasks run: threads of the run's own process, or a Dask cluster.

On one machine, threads: on two cores they beat a local Dask cluster for this work
(docs/benchmarks.md). For a region, a Dask cluster: the flow's process reads and
fingerprints the source and prepares its tables, then hands the checks of each table,
each unit of shards (stage, score, shape, check, write) and the pages of each shard to
the cluster's workers. The workers write into the run's version folder themselves, so
the output folder must be one path that every worker and the flow's process can reach
(a shared folder), and the Prefect server must be one they can reach too: they report
their task runs to it.

The runner is chosen by the options of `chronology build` and `chronology serve-nightly`
(`--runner`, `--dask-address`), which set the environment variables below; a run that
imports the flow afresh (each run of a served deployment, or one under a work pool)
takes them from its environment.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable

from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

from flows.cli import DASK_ADDRESS_VARIABLE, RUNNER_VARIABLE, RUNNERS

# The flow's own tasks at a time on threads: two table checks or units side by side
# (the work inside each task has its own threads).
THREADS = 2


def chosen(runner: str | None, dask_address: str | None) -> str:
    """The runner asked for: `runner`, or, left unsaid, Dask when a scheduler's address
    is given and threads when not."""
    runner = runner or ("dask" if dask_address else "threads")
    if runner not in RUNNERS:
        raise ValueError(f"runner {runner!r} is not one of {', '.join(RUNNERS)} "
                         f"(--runner, or {RUNNER_VARIABLE})")
    if runner == "threads" and dask_address:
        raise ValueError("a Dask scheduler's address needs the dask runner (--runner dask, "
                         f"or {RUNNER_VARIABLE}=dask; the address may come from "
                         f"{DASK_ADDRESS_VARIABLE})")
    return runner


def task_runner(runner: str | None = None, dask_address: str | None = None,
                workers: int = 2) -> TaskRunner:
    """The task runner for `runner` (`chosen`): threads, or Dask, on the cluster whose
    scheduler is at `dask_address` or, with none, on a local cluster of `workers`
    processes started for the run (one thread each: the work holds the interpreter
    lock)."""
    if chosen(runner, dask_address) == "threads":
        return ThreadPoolTaskRunner(max_workers=THREADS)
    from prefect_dask import DaskTaskRunner

    if dask_address:
        return DaskTaskRunner(address=dask_address)
    return DaskTaskRunner(cluster_kwargs={"n_workers": workers, "threads_per_worker": 1,
                                          "processes": True, "dashboard_address": None})


def check_scheduler(dask_address: str, timeout: float = 10) -> None:
    """Raise ConnectionError, saying why, unless a Dask scheduler answers at
    `dask_address` (before a run starts, rather than a failed run after 30 s), with the
    security settings (TLS) of Dask's configuration."""
    import asyncio

    from distributed.comm import connect
    from distributed.security import Security

    async def handshake() -> None:  # a Client that fails leaves noise at exit; this not
        comm = await connect(dask_address, timeout=timeout,
                             **Security().get_connection_args("client"))
        await comm.close()

    try:
        asyncio.run(handshake())
    except Exception as error:  # noqa: BLE001 - whatever the reason, said in a line
        raise ConnectionError(f"cannot reach the Dask scheduler at {dask_address}: "
                              f"{error}") from None


def check_prefect_reachable(dask_address: str, api_url: str | None) -> None:
    """Raise ConnectionError when the workers of a cluster on other machines could not
    report to the Prefect server: none is set (each worker would start a temporary
    server of its own), or it is at this machine's loopback address."""
    if _is_loopback(dask_address):
        return
    if not api_url or _is_loopback(api_url):
        raise ConnectionError(
            f"the workers of the Dask cluster at {dask_address} report their task runs to "
            "the Prefect server, so PREFECT_API_URL must be its address as they reach it "
            f"(not {api_url or 'unset'}); start a standing server (prefect server start "
            "--host 0.0.0.0) and set PREFECT_API_URL=http://<this host>:4200/api")


def _is_loopback(address: str) -> bool:
    from ipaddress import ip_address
    from urllib.parse import urlsplit

    host = urlsplit(address if "://" in address else f"tcp://{address}").hostname or ""
    if host == "localhost":
        return True
    try:
        return ip_address(host).is_loopback
    except ValueError:
        return False


def from_environment() -> TaskRunner:
    """The task runner the environment asks for (`CHRONOLOGY_RUNNER`,
    `CHRONOLOGY_DASK_ADDRESS`); threads when it asks for none."""
    return task_runner(os.environ.get(RUNNER_VARIABLE) or None,
                       os.environ.get(DASK_ADDRESS_VARIABLE) or None)


def choose(runner: str | None, dask_address: str | None) -> None:
    """Put the runner in the environment, where a run that imports the flow afresh
    finds it (`from_environment`)."""
    os.environ[RUNNER_VARIABLE] = chosen(runner, dask_address)
    if dask_address:
        os.environ[DASK_ADDRESS_VARIABLE] = dask_address
    else:
        os.environ.pop(DASK_ADDRESS_VARIABLE, None)


def on_cluster() -> tuple[Callable[[Callable, Iterable], list], int] | None:
    """When the flow run's tasks go to a Dask cluster: a `map` that runs calls of a
    function on its workers, in order, and how many workers it has; None otherwise."""
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    # A Dask runner has imported prefect_dask; a threaded run need not import it to say no.
    dask = sys.modules.get("prefect_dask")
    if context is None or dask is None or not isinstance(context.task_runner,
                                                         dask.DaskTaskRunner):
        return None
    runner = context.task_runner
    client = runner.client

    def cluster_map(function: Callable, jobs: Iterable) -> list:
        return client.gather(client.map(function, list(jobs), pure=False))

    return cluster_map, len(client.nthreads())
