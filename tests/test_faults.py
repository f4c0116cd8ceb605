"""A run killed at any moment leaves the published output whole, and the next run
succeeds and cleans up after it; two runs never write one output at once.

The killed and the held runs are real processes (`tests/faulty_build.py`) running the
flow against this session's Prefect server; the runs that follow them run here.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fixtures.generator import generate_database
from flows import sinks
from flows.build import build_chronologies
from flows.publish import LOCK, OutputBusy

ROOT = Path(__file__).parent.parent


@pytest.fixture(autouse=True)
def prefect(prefect_harness):
    yield


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("faults") / "ssd.sqlite"
    generate_database(path, children=40, seed=5)
    return str(path)


@pytest.fixture(scope="module")
def published(source, tmp_path_factory) -> Path:
    """An output with one published run, copied by each test that needs one."""
    out = tmp_path_factory.mktemp("published") / "out"
    _build(source, out)
    return out


def _build(source: str, out: Path) -> dict:
    return build_chronologies(source=source, out=str(out), shards=1, as_of="2026-03-31")


def _start(point: str, source: str, out: Path) -> subprocess.Popen:
    from prefect.settings import PREFECT_API_URL

    # The child talks to this session's Prefect server instead of starting its own.
    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value(),
           "PREFECT_LOGGING_LEVEL": "CRITICAL"}
    return subprocess.Popen([sys.executable, "-m", "tests.faulty_build", point, source,
                             str(out)], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def _killed_at(point: str, source: str, out: Path) -> str:
    """Run a build killed at `point`; the name of the version folder it left."""
    before = _versions(out)
    run = _start(point, source, out)
    said, _ = run.communicate(timeout=600)
    assert run.returncode == -signal.SIGKILL, f"the run was not killed at {point}:\n{said}"
    (left,) = _versions(out) - before
    return left


def _digest(folder: Path) -> dict[str, str]:
    """Every file under `folder` (through the `current` link) and a hash of its bytes."""
    return {str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(folder.rglob("*")) if path.is_file()}


def _versions(out: Path) -> set[str]:
    return {p.name for p in (out / sinks.VERSIONS).iterdir()}


def _current(out: Path) -> str:
    return (out / sinks.CURRENT).resolve().name


def test_runs_killed_at_any_point_leave_the_current_output_whole(source, published,
                                                                 tmp_path):
    out = tmp_path / "out"
    shutil.copytree(published, out, symlinks=True)
    (first,) = _versions(out)
    before = _digest(out / sinks.CURRENT)
    assert len(before) > 40  # the pages, tables and manifest

    versions = out / sinks.VERSIONS
    # Each run, before it starts, deletes what the one before it left; so look now.
    left = _killed_at("extract", source, out)
    assert not (versions / left / "chronology").exists()
    left = _killed_at("write", source, out)
    assert list((versions / left).rglob("*.parquet"))  # some shards written
    # Killed before rendering (pages carried over may be linked already: that starts
    # as soon as the run knows whom it takes).
    assert not (versions / left / "site" / "index.html").exists()
    left = _killed_at("render", source, out)
    assert list((versions / left / "site").rglob("*.html"))  # some pages
    assert not (versions / left / "manifest.json").exists()
    left = _killed_at("publish", source, out)
    # Killed with its new pointer made but not yet renamed over `current`.
    assert (out / f".{sinks.CURRENT}.{left}").is_symlink()
    assert _current(out) == first
    assert _digest(out / sinks.CURRENT) == before

    # Killed just after the switch: the new output is published, and whole.
    switched = _killed_at("switched", source, out)
    assert _current(out) == switched
    assert (versions / switched / "manifest.json").exists()
    assert ({p.name for p in (versions / switched / "site" / "children").iterdir()}
            == {p.name for p in (versions / first / "site" / "children").iterdir()})

    after = _build(source, out)
    assert _current(out) == after["run_id"]
    # Every killed run's folder and pointer are gone; the three published versions stay.
    assert _versions(out) == {first, switched, after["run_id"]}
    assert not list(out.glob(f".{sinks.CURRENT}.*"))


def test_a_second_run_on_the_same_output_stops_with_a_clear_message(source, published,
                                                                     tmp_path):
    out = tmp_path / "out"
    shutil.copytree(published, out, symlinks=True)
    (first,) = _versions(out)
    held = _start("hold", source, out)
    try:
        for _ in range(600):  # until the other run holds the lock
            if (out / LOCK).exists() and f'"pid": {held.pid}' in (out / LOCK).read_text():
                break
            assert held.poll() is None, held.communicate()[0]
            time.sleep(0.1)
        else:
            pytest.fail("the held run never took the lock")
        with pytest.raises(OutputBusy, match=rf"process {held.pid}.* is writing"):
            _build(source, out)
        assert _current(out) == first
    finally:
        (out / "release").touch()
        said, _ = held.communicate(timeout=600)
    assert held.returncode == 0, said
    assert _current(out) != first
