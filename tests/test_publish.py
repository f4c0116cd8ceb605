"""One writer at a time, and what a run cleans up (flows/publish.py)."""

from __future__ import annotations

import json
import multiprocessing
import os
import time
from pathlib import Path

import pytest

from flows import sinks
from flows.publish import LOCK, OutputBusy, clean_up, exclusive, mark_published


def _hold(out: str, run_id: str, holding, release) -> None:
    with exclusive(Path(out), run_id):
        holding.set()
        release.wait(60)


@pytest.fixture
def other_run(tmp_path):
    """Another process holding the lock of `tmp_path / "out"` until told to let go."""
    context = multiprocessing.get_context("spawn")
    holding, release = context.Event(), context.Event()
    process = context.Process(target=_hold, args=(str(tmp_path / "out"), "RUN-A", holding,
                                                  release))
    process.start()
    assert holding.wait(60), "the other process never took the lock"
    yield process, release
    if process.is_alive():  # (a killed process may have died holding the event's lock)
        release.set()
        process.join(60)


def test_a_second_writer_stops_and_names_the_first(other_run, tmp_path):
    with pytest.raises(OutputBusy, match=r"run RUN-A \(process \d+, since .*\) is writing"):
        with exclusive(tmp_path / "out", "RUN-B"):
            pytest.fail("two writers held the lock")


def test_a_second_writer_waits_for_the_first_when_asked(other_run, tmp_path):
    process, release = other_run
    started = time.monotonic()
    with pytest.raises(OutputBusy, match="after waiting 0.5 s"):
        with exclusive(tmp_path / "out", "RUN-B", wait_seconds=0.5):
            pass
    assert time.monotonic() - started >= 0.5
    release.set()
    with exclusive(tmp_path / "out", "RUN-B", wait_seconds=30):
        holder = json.loads((tmp_path / "out" / LOCK).read_text())
    assert holder["run_id"] == "RUN-B" and holder["pid"] == os.getpid()


def test_a_killed_holder_leaves_no_stale_lock(other_run, tmp_path):
    process, _ = other_run
    process.kill()
    process.join(60)
    with exclusive(tmp_path / "out", "RUN-B"):
        pass


def _versions(out: Path, *names: str, published=(), refused=()) -> None:
    for name in names:
        folder = out / sinks.VERSIONS / name
        folder.mkdir(parents=True)
        (folder / "children.parquet").write_bytes(b"")
        (folder / "manifest.json").write_text(json.dumps({"published": name not in refused}))
        if name in published:
            mark_published(folder)


def _left(out: Path) -> list[str]:
    return sorted(p.name for p in (out / sinks.VERSIONS).iterdir())


def test_clean_up_keeps_the_newest_published_versions(tmp_path):
    names = [f"2026112{day}T020000Z-aaaaaa" for day in range(1, 6)]
    _versions(tmp_path, *names, published=names)
    sinks.make_current(tmp_path, names[-1])
    assert clean_up(tmp_path, keep=3) == names[:2]
    assert _left(tmp_path) == names[2:]


def test_clean_up_removes_killed_runs_and_keeps_the_last_refused_one(tmp_path):
    good, failed_old, failed_new, killed, unswitched = (
        "20261121T020000Z-a", "20261122T020000Z-b", "20261123T020000Z-c",
        "20261124T020000Z-d", "20261125T020000Z-e")
    _versions(tmp_path, good, failed_old, failed_new, killed, unswitched, published=[good],
              refused=[failed_old, failed_new])
    (tmp_path / sinks.VERSIONS / killed / "manifest.json").unlink()  # killed before it
    sinks.make_current(tmp_path, good)
    # Killed with its pointer made but not renamed into place.
    (tmp_path / f".current.{unswitched}").symlink_to(Path("versions") / unswitched)
    assert clean_up(tmp_path, keep=3) == [failed_old, killed, unswitched]
    assert _left(tmp_path) == [good, failed_new]
    assert not list(tmp_path.glob(".current.*"))
    assert (tmp_path / "current" / "children.parquet").exists()


def test_clean_up_never_removes_the_current_version(tmp_path):
    old, newer = "20261121T020000Z-a", "20261122T020000Z-b"
    _versions(tmp_path, old, newer, published=[old, newer])
    sinks.make_current(tmp_path, old)  # pointed back at an older version by hand
    assert clean_up(tmp_path, keep=1) == []
    assert _left(tmp_path) == [old, newer]


def test_clean_up_of_a_new_output_does_nothing(tmp_path):
    assert clean_up(tmp_path / "nothing-yet") == []
    with pytest.raises(ValueError, match="keep at least"):
        clean_up(tmp_path, keep=0)


def test_an_output_from_before_the_markers_keeps_its_published_versions(tmp_path):
    names = [f"2026112{day}T020000Z-aaaaaa" for day in range(1, 6)]
    _versions(tmp_path, *names)  # published, as their manifests say, but never marked
    sinks.make_current(tmp_path, names[-1])
    assert clean_up(tmp_path, keep=3) == names[:2]
    assert _left(tmp_path) == names[2:]
