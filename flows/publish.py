"""One writer at a time, and an output that is always whole.

A run writes its outputs into a new folder `OUT/versions/<run-id>/` and then makes it
current by renaming a symlink over `OUT/current` (`sinks.make_current`): one atomic step,
so a reader sees the old output or the new one, never a mixture, and a run that fails or
is killed at any moment leaves `current` as it was. Its unfinished folder is removed by
the next run (`clean_up`), which also keeps only the last few published versions.

Two runs writing one output at once would race for the pointer and delete each other's
folders, so a run holds an exclusive lock on `OUT/.lock` from start to publish
(`exclusive`). The lock is the operating system's (`flock`): it is released when the
process ends however it ends, so a killed run never leaves a stale lock behind. (It is
also why a shared output folder must be on a file system with working `flock`, as local
disks and NFS v4 are.)
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from flows.cli import DEFAULT_KEEP
from flows.sinks import CURRENT, VERSIONS

LOCK = ".lock"
# A version's marker, written once it has been made current.
PUBLISHED = ".published"


class OutputBusy(RuntimeError):
    """Another run is writing the same output folder."""


@contextmanager
def exclusive(out: Path, run_id: str, wait_seconds: float = 0) -> Iterator[None]:
    """Hold the output's lock for the block; wait up to `wait_seconds` for another run
    to finish, then give up with `OutputBusy` naming that run."""
    out.mkdir(parents=True, exist_ok=True)
    fd = os.open(out / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + wait_seconds
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise OutputBusy(_busy_message(out, wait_seconds)) from None
                time.sleep(min(1.0, max(deadline - time.monotonic(), 0.01)))
        # Who holds it, for the message a second run gives. Not the lock itself.
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"run_id": run_id, "pid": os.getpid(),
                                  "since": datetime.now(UTC).isoformat(timespec="seconds")}
                                 ).encode(), 0)
        yield
    finally:
        os.close(fd)  # closing the file releases the lock


def _busy_message(out: Path, waited: float) -> str:
    try:
        holder = json.loads((out / LOCK).read_text(encoding="utf-8"))
        who = f"run {holder['run_id']} (process {holder['pid']}, since {holder['since']})"
    except (OSError, ValueError, KeyError, TypeError):
        who = "another run"
    after = f" after waiting {waited:g} s" if waited else ""
    return (f"{who} is writing {out}; this run stopped{after} without touching it. "
            "Run again when that one has finished.")


def mark_published(version: Path) -> None:
    """Record that `version` has been current (after `sinks.make_current`)."""
    (version / PUBLISHED).touch()


def clean_up(out: Path, keep: int = DEFAULT_KEEP) -> list[str]:
    """Delete what earlier runs left that is no longer wanted; the names deleted.

    Kept: the current version; the `keep` newest published versions (the current one
    among them, unless someone has pointed `current` back at an older one); and the
    newest run that finished and was refused publication (one that failed validation),
    so that its manifest and rejects can still be read. Deleted: older versions, the
    folders of runs that were killed or raised before finishing, and any pointer left
    half-made. Call it holding the output's lock.
    """
    if keep < 1:
        raise ValueError("keep at least the current version")
    folder = out / VERSIONS
    if not folder.is_dir():
        return []
    current = _current_name(out)
    versions = sorted(p.name for p in folder.iterdir() if p.is_dir())  # run ids sort by time
    # An output written before versions were marked: trust the manifests of those before
    # the current one (once, until this clean-up marks the current one).
    unmarked = not any((folder / v / PUBLISHED).exists() for v in versions)
    if current and (folder / current).is_dir():
        # A run killed just after the switch is published but has no marker yet.
        mark_published(folder / current)
    published = [v for v in versions if v == current or (folder / v / PUBLISHED).exists()
                 or (unmarked and current is not None and v < current
                     and _published_says(folder / v) is True)]
    failed = [v for v in versions if v not in published and _refused(folder / v)]
    wanted = {current, *published[-keep:], *failed[-1:]}
    removed = []
    for name in versions:
        if name not in wanted:
            shutil.rmtree(folder / name)
            removed.append(name)
    for stray in out.glob(f".{CURRENT}.*"):  # a pointer made but never renamed into place
        stray.unlink()
    return removed


def _refused(version: Path) -> bool:
    """Whether the run finished and decided not to publish (its manifest says so); a run
    killed between writing its manifest and the switch has a manifest that says yes."""
    return _published_says(version) is False


def _published_says(version: Path) -> bool | None:
    try:
        return json.loads((version / "manifest.json").read_text(encoding="utf-8")
                          ).get("published")
    except (OSError, ValueError, AttributeError):
        return None


def _current_name(out: Path) -> str | None:
    link = out / CURRENT
    if not link.is_symlink():
        return None
    return Path(os.readlink(link)).name
