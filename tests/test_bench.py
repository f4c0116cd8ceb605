"""The benchmark's plumbing: each timed run in a process of its own; the I/O floor."""

import os
import socket
import subprocess
import sys
import time
from types import SimpleNamespace

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fixtures.generator import generate_database
from flows.bench import (
    ProcessTreeMemory,
    _database,
    _in_own_process,
    _peak_mb,
    io_floor,
    process_tree_mb,
)


def _sends_a_large_result(options: dict, api_url: str, results) -> None:
    results.send({"rows": list(range(options["rows"]))})


def _sends_its_peak_memory(options: dict, api_url: str, results) -> None:
    results.send({"peak_mb": _peak_mb()})


def _ends_without_a_result(options: dict, api_url: str, results) -> None:
    os._exit(3)


def _closed_port() -> int:
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        return free.getsockname()[1]


def test_a_run_s_result_comes_back_whole():
    # Far larger than a pipe's buffer: the run's process must not wait on a full pipe.
    result = _in_own_process({"rows": 200_000}, "unused", _sends_a_large_result)
    assert result["rows"] == list(range(200_000))


def test_a_run_reports_its_own_peak_memory_not_its_parent_s():
    # A spawned process inherits its parent's ru_maxrss across exec: a rerun measured after
    # the benchmark generated its database in-process read as large as the generator.
    held = bytearray(600 * 2**20)  # zero pages are not resident until written
    held[::4096] = b"x" * len(held[::4096])
    assert _peak_mb() > 600
    result = _in_own_process({}, "unused", _sends_its_peak_memory)
    del held
    assert 0 < result["peak_mb"] < 400


def test_generating_the_database_does_not_count_in_the_benchmark_s_peak(tmp_path,
                                                                       monkeypatch):
    def generate(path, children, seed):  # as large as a generator, briefly
        held = bytearray(400 * 2**20)
        held[::4096] = b"x" * len(held[::4096])
        path.write_bytes(b"")
        return SimpleNamespace(rows={"ssd_person": children}, seconds=1.0)

    monkeypatch.setattr("fixtures.generator.generate_database", generate)
    before = process_tree_mb(os.getpid())  # this process alone: it has started none
    _database(tmp_path / "bench.sqlite", children=10, seed=1)
    assert _peak_mb() < before + 200


def test_a_run_that_ends_without_a_result_is_reported_not_waited_for():
    with pytest.raises(RuntimeError, match=r"a benchmark run failed \(exit code 3\)"):
        _in_own_process({}, "unused", _ends_without_a_result)


def test_a_flow_run_that_fails_is_reported(tmp_path):
    # No Prefect server listens there: the flow fails as it starts.
    with pytest.raises(RuntimeError, match=r"a benchmark run failed \(exit code 1\)"):
        _in_own_process({"source": str(tmp_path / "absent.sqlite"), "out": str(tmp_path)},
                        f"http://127.0.0.1:{_closed_port()}/api")


def test_the_io_floor_reads_the_source_and_writes_the_datasets_again(tmp_path):
    database = tmp_path / "ssd.sqlite"
    generate_database(database, children=40, seed=5)
    outputs = tmp_path / "run"
    files = [outputs / "chronology" / "shard=0" / "part-0.parquet",
             outputs / "events" / "shard=0" / "part-0.parquet",
             outputs / "events" / "shard=1" / "part-0.parquet"]
    for number, path in enumerate(files):
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table({"child_id": [f"C{number}"] * 1000, "n": range(1000)}), path)
    pq.write_table(pa.table({"child_id": ["C0"]}), outputs / "children.parquet")  # not timed
    before = {path: path.read_bytes() for path in files}

    floor = io_floor(database, outputs, workers=2)

    assert floor.files == 3
    assert floor.bytes >= sum(len(data) for data in before.values()) * 0.5
    assert floor.read > 0 and floor.write > 0
    assert floor.total == floor.read + floor.write
    # The build's files are left as they were, and the copies are gone.
    assert {path: path.read_bytes() for path in files} == before
    assert [path for path in tmp_path.iterdir() if path.is_dir()] == [outputs]


def test_the_memory_of_worker_processes_counts_with_their_parents():
    own = process_tree_mb(os.getpid())
    # A worker holding 200 MB of its own, started from this process.
    worker = subprocess.Popen([sys.executable, "-c", "import sys, time; b = bytearray(200 "
                               "* 2**20); sys.stdout.write('ready\\n'); sys.stdout.flush(); "
                               "time.sleep(60)"], stdout=subprocess.PIPE, text=True)
    try:
        assert worker.stdout.readline() == "ready\n"
        with ProcessTreeMemory(interval=0.05) as memory:
            time.sleep(0.3)
        assert process_tree_mb(os.getpid()) > own + 200
        assert memory.peak_mb > own + 200
    finally:
        worker.kill()
        worker.wait()


def test_each_stage_s_peak_is_what_was_held_during_it_not_after():
    with ProcessTreeMemory(interval=0.02) as memory:
        time.sleep(0.1)
        memory.lap("small")
        held = bytearray(300 * 2**20)  # touched: every page resident
        time.sleep(0.1)
        memory.lap("large")
        del held
    assert memory.stage_peaks["large"] > memory.stage_peaks["small"] + 250
    assert memory.peak_mb >= memory.stage_peaks["large"]
