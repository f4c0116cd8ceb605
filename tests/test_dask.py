"""The flow on a real local Dask cluster (two worker processes) writes what it writes on
threads, row for row; and the runner options say plainly what is wrong with them."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
from click.testing import CliRunner

from fixtures.generator import generate_database
from flows.build import build_chronologies
from flows.cli import main
from flows.runners import (
    check_prefect_reachable,
    check_scheduler,
    chosen,
    from_environment,
    task_runner,
)
from flows.validation import SuiteRunner
from tests.conftest import assert_same_outputs

AS_OF = "2026-03-31"
SHARDS = 3


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("dask") / "ssd.sqlite"
    generate_database(path, children=250, seed=23, bad_rate=0.01)
    return path


def test_a_run_on_a_local_dask_cluster_writes_what_threads_write(prefect_harness, source,
                                                                 tmp_path):
    on_threads = build_chronologies(source=str(source), out=str(tmp_path / "threads"),
                                    shards=SHARDS, as_of=AS_OF)
    on_dask = build_chronologies.with_options(task_runner=task_runner("dask", workers=2))(
        source=str(source), out=str(tmp_path / "dask"), shards=SHARDS, as_of=AS_OF)

    assert on_threads["status"] == on_dask["status"] == "succeeded"
    assert on_dask["children"] == on_threads["children"] > 200
    # The pages were rendered by the cluster's two worker processes.
    assert on_dask["site"]["processes"] == 2
    assert_same_outputs(on_threads, on_dask)


def test_a_suite_runner_sent_to_a_worker_is_that_worker_s_own():
    runner = SuiteRunner()
    runner._local.context = object()  # what a thread of this process holds
    copy = pickle.loads(pickle.dumps(runner))
    assert isinstance(copy, SuiteRunner) and copy is not runner
    assert not hasattr(copy._local, "context")
    # Every task sent to the process finds the same runner, with its GX contexts.
    assert pickle.loads(pickle.dumps(SuiteRunner())) is copy


def test_runner_choices_are_checked():
    assert chosen(None, None) == "threads"
    assert chosen(None, "tcp://10.0.0.5:8786") == "dask"  # an address says where to run
    assert chosen("dask", None) == "dask"  # a local cluster
    with pytest.raises(ValueError, match="address needs the dask runner"):
        task_runner("threads", "tcp://127.0.0.1:8786")
    with pytest.raises(ValueError, match="not one of threads, dask"):
        task_runner("spark")


def test_the_environment_chooses_the_runner_of_a_flow_imported_afresh(monkeypatch):
    monkeypatch.delenv("CHRONOLOGY_RUNNER", raising=False)
    monkeypatch.setenv("CHRONOLOGY_DASK_ADDRESS", "tcp://10.0.0.5:8786")
    runner = from_environment()
    assert type(runner).__name__ == "DaskTaskRunner"
    assert runner.address == "tcp://10.0.0.5:8786"
    monkeypatch.delenv("CHRONOLOGY_DASK_ADDRESS")
    assert type(from_environment()).__name__ == "ThreadPoolTaskRunner"


def test_a_scheduler_that_does_not_answer_is_said_in_a_line():
    for address, reason in (("tcp://127.0.0.1:1", "Timed out"),
                            ("no-port-here", "missing port"),
                            ("tls://127.0.0.1:1", "")):  # no certificates configured
        with pytest.raises(ConnectionError, match=f"cannot reach the Dask scheduler at "
                           f"{address}: .*{reason}"):
            check_scheduler(address, timeout=1)


def test_workers_on_other_machines_need_a_prefect_server_they_can_reach():
    check_prefect_reachable("tcp://127.0.0.1:8786", None)  # workers on this machine
    check_prefect_reachable("tcp://10.0.0.5:8786", "http://10.0.0.2:4200/api")
    for api in (None, "http://127.0.0.1:4200/api", "http://localhost:4200/api"):
        with pytest.raises(ConnectionError, match="PREFECT_API_URL must be its address"):
            check_prefect_reachable("tcp://10.0.0.5:8786", api)


def test_a_dask_address_with_the_threads_runner_is_a_usage_error(source, tmp_path):
    result = CliRunner().invoke(main, ["build", "--source", str(source), "--out",
                                       str(tmp_path / "out"), "--runner", "threads",
                                       "--dask-address", "tcp://127.0.0.1:8786"])
    assert result.exit_code == 1
    assert "address needs the dask runner" in result.output
    assert not (tmp_path / "out").exists()
