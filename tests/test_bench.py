"""The benchmark's plumbing: each timed run in a process of its own."""

import os
import socket

import pytest

from flows.bench import _in_own_process


def _sends_a_large_result(options: dict, api_url: str, results) -> None:
    results.send({"rows": list(range(options["rows"]))})


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


def test_a_run_that_ends_without_a_result_is_reported_not_waited_for():
    with pytest.raises(RuntimeError, match=r"a benchmark run failed \(exit code 3\)"):
        _in_own_process({}, "unused", _ends_without_a_result)


def test_a_flow_run_that_fails_is_reported(tmp_path):
    # No Prefect server listens there: the flow fails as it starts.
    with pytest.raises(RuntimeError, match=r"a benchmark run failed \(exit code 1\)"):
        _in_own_process({"source": str(tmp_path / "absent.sqlite"), "out": str(tmp_path)},
                        f"http://127.0.0.1:{_closed_port()}/api")
