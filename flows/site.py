"""Render a run's site from its written outputs: a page per child, then the index.

Pages are made shard by shard from the version folder's Parquet files, so a worker
holds one shard at a time however many children there are. Rendering is pure Python
(Jinja) and holds the interpreter lock, so on a big run the shards are shared among
worker processes, not threads; a small run renders in this process, because starting a
worker (importing pandas, pyarrow and Jinja) costs more than it saves.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import cache
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from flows import sinks
from transforms.pages import (
    MEMBER_COLUMNS,
    RunInfo,
    Templates,
    child_pages,
    index_page,
    load_templates,
)
from transforms.rules import Rules
from transforms.shards import shard_of

SITE = "site"
CHILDREN = "children"
# Below this many children, worker processes cost more to start than they save.
PROCESSES_FROM = 4000
# The children whose pages a worker makes at once (a few hundred MB of their rows as
# pandas frames; their pages are then written and the frames let go).
PAGES_AT_ONCE = 2000


@dataclass
class SiteReport:
    pages: int
    page_bytes: np.ndarray
    seconds: float
    processes: int  # worker processes that rendered the pages; 0 when this one did
    worker_peak_mb: float | None = None  # the largest worker's peak memory

    def summary(self) -> dict:
        sizes = self.page_bytes
        return {
            "pages": self.pages,
            "processes": self.processes,
            "seconds": round(self.seconds, 3),
            "pages_per_second": round(self.pages / self.seconds, 1) if self.seconds else None,
            "median_page_bytes": int(np.median(sizes)) if len(sizes) else 0,
            "largest_page_bytes": int(sizes.max()) if len(sizes) else 0,
            "total_bytes": int(sizes.sum()),
            "worker_peak_mb": self.worker_peak_mb,
        }


def site_line(site: dict) -> str:
    """What `SiteReport.summary` says, in one line."""
    rate = f" ({site['pages_per_second']:,.0f} pages/s)" if site["pages_per_second"] else ""
    where = (f"{site['processes']} worker processes" if site["processes"]
             else "the run's own process")
    return (f"pages: {site['pages']:,} child pages and the index in {site['seconds']:.1f} s"
            f"{rate} by {where}; median page {site['median_page_bytes'] / 1024:,.1f} KB, largest "
            f"{site['largest_page_bytes'] / 1024:,.0f} KB, {site['total_bytes'] / 2**20:,.0f} MB"
            " in all" + (f"; peak memory of a worker {site['worker_peak_mb']:,.0f} MB"
                         if site.get("worker_peak_mb") else ""))


def render_site(version: Path, shards: int, workers: int, rules: Rules, run: RunInfo,
                only: frozenset[str] | None = None,
                cluster: tuple[Callable[[Callable, Iterable], list], int] | None = None
                ) -> SiteReport:
    """Write `version/site/children/<page-id>.html` for every child of the run (or only
    those in `only`, when the others' pages are already there) and
    `version/site/index.html`; the children's page ids are in `children.parquet`.
    `cluster` (`flows.runners.on_cluster`) renders the shards on a Dask cluster's workers
    instead of this machine's."""
    clock = time.perf_counter()
    folder = version / SITE / CHILDREN
    folder.mkdir(parents=True, exist_ok=True)
    children = pd.read_parquet(version / "children.parquet")
    jobs = [(version, number, shards, rules, run, only) for number in range(shards)]
    rendered = len(children) if only is None else len(only)
    processes = min(workers, shards) if workers > 1 and rendered >= PROCESSES_FROM else 0
    if cluster is not None:
        cluster_map, processes = cluster
        done = cluster_map(_render_shard_job, jobs)
    elif processes > 1:
        # "spawn": the flow runs threads (Prefect's among them), which fork would copy
        # in whatever state they are in.
        with ProcessPoolExecutor(max_workers=processes,
                                 mp_context=get_context("spawn")) as pool:
            done = list(pool.map(_render_shard_job, jobs))
    else:
        processes = 0
        # In this process the children and periods tables are read once, not per shard,
        # and cut once to the children whose pages are remade (a 1% rerun's 980 of
        # 100,000), not once per shard.
        periods = pd.read_parquet(version / "periods.parquet")
        remade, remade_periods = children, periods
        if only is not None:
            remade = children[children["child_id"].isin(only).to_numpy(dtype=bool)]
            remade_periods = periods[periods["child_id"].isin(only).to_numpy(dtype=bool)]
        done = [(render_shard(*job, tables=(remade, remade_periods)), None) for job in jobs]
    sizes = [size for size, _ in done]
    peak = max((mb for _, mb in done if mb is not None), default=None)
    (version / SITE / "index.html").write_text(index_page(children, _templates(), run),
                                                encoding="utf-8")
    page_bytes = np.concatenate(sizes) if sizes else np.array([], dtype=np.int64)
    return SiteReport(pages=len(page_bytes), page_bytes=page_bytes,
                      seconds=time.perf_counter() - clock, processes=processes,
                      worker_peak_mb=peak)


def render_shard(version: Path, number: int, shards: int, rules: Rules, run: RunInfo,
                 only: frozenset[str] | None = None,
                 tables: tuple[pd.DataFrame, pd.DataFrame] | None = None) -> np.ndarray:
    """Write the pages of one shard's children (those in `only`, if given); the size of
    each page in bytes. `tables` are the version's children and periods, when read
    already."""
    if tables is None:
        # A worker reads only its shard's children and their periods: the ids first,
        # then the rows of those ids, so that it never holds every child's.
        ids = pq.read_table(version / "children.parquet", columns=["child_id"])["child_id"]
        ids = _of_shard(ids.to_pandas(), only, shards, number)
        if not len(ids):  # nothing to remake here: the shard's data need not be read
            return np.array([], dtype=np.int64)
        children, periods = (pd.read_parquet(version / name, filters=sinks.of_children(
            sorted(ids))) for name in ("children.parquet", "periods.parquet"))
    else:
        children, periods = tables
        children = children[children["child_id"].isin(_of_shard(
            children["child_id"], only, shards, number)).to_numpy(dtype=bool)]
    children = children.sort_values("child_id", ignore_index=True)
    if children.empty:  # nothing to remake here: the shard's data need not be read
        return np.array([], dtype=np.int64)
    periods = periods[periods["child_id"].isin(set(children["child_id"])).to_numpy(
        dtype=bool)]
    # Every shard writes its partitions, empty or not (`flows.steps`). When the shard
    # also holds children whose pages are not remade (`only`: those the run built), only
    # the built rows are read.
    built = only is not None
    folder = version / SITE / CHILDREN
    sizes = []
    # A few children at a time, each batch reading only its own rows (the partitions are
    # in child order, `sinks.write_partition`), so that a worker's memory follows the
    # batch, not the shard.
    for start in range(0, len(children), PAGES_AT_ONCE):
        batch = children.iloc[start:start + PAGES_AT_ONCE]
        ids = batch["child_id"].tolist()
        entries = sinks.read_partition(version / "chronology", number, children=ids,
                                       built=built)
        members = sinks.read_partition(version / "events", number,
                                       [*MEMBER_COLUMNS, "child_id"], ids, built=built)
        for page_id, html in child_pages(
                entries, batch,
                periods[periods["child_id"].isin(batch["child_id"]).to_numpy(dtype=bool)],
                members, rules, _templates(), run):
            data = html.encode("utf-8")
            (folder / f"{page_id}.html").write_bytes(data)
            sizes.append(len(data))
    return np.array(sizes, dtype=np.int64)


def _of_shard(ids: pd.Series, only: frozenset[str] | None, shards: int, number: int
              ) -> pd.Series:
    """The ids of shard `number` (of those in `only`, if given)."""
    if only is not None:  # the few children asked for first: hashing every id is not free
        ids = ids[ids.isin(only).to_numpy(dtype=bool)]
    return ids[shard_of(ids, shards) == number]


def _render_shard_job(job: tuple) -> tuple[np.ndarray, float | None]:
    """One shard in a worker process: its page sizes, and the process's peak memory."""
    return render_shard(*job), peak_mb()


def peak_mb() -> float | None:
    """This process's peak resident memory, in MB (None where /proc is not there).

    VmHWM, not getrusage: a process started by spawn (a render worker, a benchmark's
    run) inherits its parent's ru_maxrss across exec, so it reads as at least the
    parent's peak."""
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:  # not Linux
        return None
    found = re.search(r"^VmHWM:\s+(\d+) kB", status, flags=re.M)
    return int(found[1]) / 1024 if found else None


@cache
def _templates() -> Templates:
    """The templates, loaded once per process."""
    return load_templates()
