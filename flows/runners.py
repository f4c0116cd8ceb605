"""Where a run's tasks run: threads of the run's own process, or a Dask cluster.

On one machine, threads (TECH-NOTES: on two cores they beat processes and a local Dask
cluster for this pandas work). For a region, a Dask cluster: the flow process still
reads, fingerprints and checks the source tables, and hands each table's checks and
each unit of shards (stage, score, shape, check, write) to the cluster's workers, which
also render the pages shard by shard. The workers write into the run's version folder
themselves, so the output folder must be one path that every worker and the flow's
process can reach (a shared folder).

The runner is chosen by `chronology build --runner`/`--dask-address` and
`chronology serve-nightly` (the same options), or, for a deployment run under a work
pool, which imports the flow afresh, by the environment variables below.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable

from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

from flows.cli import DASK_ADDRESS_VARIABLE, RUNNER_VARIABLE, RUNNERS

# The flow's own tasks at a time on threads: two table checks or units side by side
# (the work inside each task has its own threads).
THREADS = 2


def task_runner(runner: str = "threads", dask_address: str | None = None,
                workers: int = 2) -> TaskRunner:
    """The task runner for `runner`: threads, or Dask, on the cluster whose scheduler is
    at `dask_address` or, with none, on a local cluster of `workers` processes started
    for the run (one thread each: the work holds the interpreter lock)."""
    if runner not in RUNNERS:
        raise ValueError(f"runner {runner!r} is not one of {', '.join(RUNNERS)}")
    if runner == "threads":
        if dask_address:
            raise ValueError("a Dask address needs the dask runner (--runner dask)")
        return ThreadPoolTaskRunner(max_workers=THREADS)
    from prefect_dask import DaskTaskRunner

    if dask_address:
        return DaskTaskRunner(address=dask_address)
    return DaskTaskRunner(cluster_kwargs={"n_workers": workers, "threads_per_worker": 1,
                                          "processes": True, "dashboard_address": None})


def check_scheduler(dask_address: str, timeout: float = 10) -> None:
    """Raise ConnectionError, saying why, unless a Dask scheduler answers at
    `dask_address` (before a run starts, rather than a failed run after 30 s)."""
    import asyncio

    from distributed.comm import connect

    async def handshake() -> None:  # a Client that fails leaves noise at exit; this not
        comm = await connect(dask_address, timeout=timeout)
        await comm.close()

    try:
        asyncio.run(handshake())
    except (OSError, TimeoutError, ValueError) as error:
        raise ConnectionError(f"cannot reach the Dask scheduler at {dask_address}: "
                              f"{error}") from None


def from_environment() -> TaskRunner:
    """The task runner the environment asks for (`CHRONOLOGY_RUNNER`,
    `CHRONOLOGY_DASK_ADDRESS`); threads when it asks for none."""
    return task_runner(os.environ.get(RUNNER_VARIABLE) or "threads",
                       os.environ.get(DASK_ADDRESS_VARIABLE) or None)


def on_cluster() -> tuple[Callable[[Callable, Iterable], list], int] | None:
    """When the flow run's tasks go to a Dask cluster: a `map` that runs calls of a
    function on its workers, in order, and how many workers it has; None otherwise."""
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    runner = context.task_runner if context is not None else None
    if runner is None or type(runner).__name__ != "DaskTaskRunner":
        return None
    client = runner.client

    def cluster_map(function: Callable, jobs: Iterable) -> list:
        return client.gather(client.map(function, list(jobs), pure=False))

    return cluster_map, len(client.nthreads())
