"""`chronology serve-nightly` against a real, standing Prefect server: the deployment is
registered with its schedule and time zone, and a run started through the API with
parameters is run by the serving process."""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from urllib.request import urlopen

import pandas as pd
import pytest

from fixtures.generator import generate_database

ROOT = Path(__file__).parent.parent


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_for(check, seconds: float, what: str, process: subprocess.Popen):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"{what}: the process ended:\n{process.communicate()[0]}")
        try:
            found = check()
        except Exception:  # noqa: BLE001 - not up yet
            found = None
        if found:
            return found
        time.sleep(0.5)
    pytest.fail(f"{what}: not within {seconds} s")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A Prefect server on a free loopback port, with its own home folder."""
    home = tmp_path_factory.mktemp("prefect-home")
    port = _free_port()
    url = f"http://127.0.0.1:{port}/api"
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_API_URL": url,
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_UI_ENABLED": "false"}
    process = subprocess.Popen([sys.executable, "-m", "prefect", "server", "start",
                                "--host", "127.0.0.1", "--port", str(port)], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        _wait_for(lambda: urlopen(f"{url}/health", timeout=2).status == 200, 120,
                  "the Prefect server", process)
        yield env
    finally:
        process.terminate()
        process.communicate(timeout=60)


@pytest.fixture(scope="module")
def served(server, tmp_path_factory):
    """`chronology serve-nightly` serving a small database into an output folder."""
    folder = tmp_path_factory.mktemp("nightly")
    source = folder / "ssd.sqlite"
    generate_database(source, children=30, seed=9)
    out = folder / "out"
    process = subprocess.Popen(
        [sys.executable, "-m", "flows.cli", "serve-nightly", "--source", str(source),
         "--out", str(out), "--cron", "30 1 * * *", "--timezone", "Europe/London",
         "--shards", "2"], cwd=ROOT, env={**server, "PREFECT_LOGGING_LEVEL": "WARNING"},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        yield source, out, process
    finally:
        process.terminate()
        process.communicate(timeout=60)


def _prefect(server: dict, code: str) -> dict:
    """Run a few lines against the server with Prefect's client; what they print, as JSON."""
    done = subprocess.run([sys.executable, "-c", code], env=server, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


READ_DEPLOYMENT = """
import json
from prefect.client.orchestration import get_client
with get_client(sync_client=True) as client:
    deployment = client.read_deployment_by_name("build-chronologies/nightly")
    schedule = deployment.schedules[0].schedule
    print(json.dumps({"cron": schedule.cron, "timezone": schedule.timezone,
                      "parameters": deployment.parameters}))
"""

RUN = """
import json
from prefect.deployments import run_deployment
run = run_deployment("build-chronologies/nightly", parameters=%r, timeout=540)
print(json.dumps({"state": run.state.type.value, "id": str(run.id)}))
"""


def test_the_nightly_deployment_is_registered_with_its_schedule(served, server):
    source, out, process = served
    found = _wait_for(lambda: _prefect(server, READ_DEPLOYMENT), 180,
                      "the nightly deployment", process)
    assert found["cron"] == "30 1 * * *"
    assert found["timezone"] == "Europe/London"
    assert found["parameters"]["source"] == str(source)
    assert found["parameters"]["out"] == str(out.resolve())


def test_a_run_for_some_children_started_through_the_api_changes_only_theirs(served, server):
    source, out, process = served
    _wait_for(lambda: _prefect(server, READ_DEPLOYMENT), 180, "the nightly deployment",
              process)
    # A whole run, as the schedule would start it.
    assert _prefect(server, RUN % ({"as_of": "2026-03-31"},))["state"] == "COMPLETED"
    first = (out / "current").resolve()
    with sqlite3.connect(source) as conn:
        wanted = sorted(r[0] for r in conn.execute(
            "SELECT pers_person_id FROM ssd_person ORDER BY pers_person_id LIMIT 2"))

    run = _prefect(server, RUN % ({"children": wanted, "as_of": "2026-03-31"},))
    assert run["state"] == "COMPLETED", run
    second = (out / "current").resolve()
    assert second != first
    children = pd.read_parquet(second / "children.parquet").set_index("child_id")
    assert json.loads((second / "manifest.json").read_text())["children"] == len(wanted)
    for child, page_id in children["page_id"].items():
        old, new = (version / "site" / "children" / f"{page_id}.html"
                    for version in (first, second))
        # Only the children asked for were rebuilt: every other page is the same file.
        assert (old.stat().st_ino == new.stat().st_ino) == (child not in wanted), child
