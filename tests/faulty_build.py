"""A build that is killed, or held, at a chosen point: run by tests/test_faults.py as
`python -m tests.faulty_build POINT SOURCE OUT` against the tests' Prefect server.

Each point wraps one function of the real flow so that the process sends itself SIGKILL
there (no clean-up, no `finally`, as when a machine is switched off or the kernel kills a
process for memory), or, for `hold`, waits for a file before going on.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

from flows import build, sinks, site


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _after(module, name: str, calls: int = 1) -> None:
    """Kill the process when `module.name` has returned `calls` times."""
    real = getattr(module, name)
    done = 0

    def wrapper(*args, **kwargs):
        nonlocal done
        result = real(*args, **kwargs)
        done += 1
        if done >= calls:
            _die()
        return result

    setattr(module, name, wrapper)


def _before_switch() -> None:
    """Kill the process when the new pointer is made but not yet renamed over `current`."""
    real = os.replace

    def replace(source, target, *args, **kwargs):
        if Path(target).name == sinks.CURRENT:
            _die()
        return real(source, target, *args, **kwargs)

    sinks.os.replace = replace


def _hold(release: Path) -> None:
    """Hold the output (the lock is taken before extraction) until `release` exists."""
    real = build.read_source_parts

    def read_source_parts(*args, **kwargs):
        while not release.exists():
            time.sleep(0.1)
        return real(*args, **kwargs)

    build.read_source_parts = read_source_parts


POINTS = {
    "extract": lambda out: _after(build, "read_source_parts"),
    "write": lambda out: _after(sinks, "write_partition", calls=2),
    "render": lambda out: _after(site, "render_shard"),
    "publish": lambda out: _before_switch(),
    "switched": lambda out: _after(sinks, "make_current"),
    "hold": lambda out: _hold(out / "release"),
}


# Later than the published output's as-of date (tests/test_faults.py): time rebuilds
# some children and the others are carried over, so a run reaches every point (a run
# with nothing to build writes no partitions).
AS_OF = "2026-05-15"


def main(point: str, source: str, out: str) -> None:
    POINTS[point](Path(out))
    build.build_chronologies(source=source, out=out, shards=1, as_of=AS_OF)


if __name__ == "__main__":
    main(*sys.argv[1:])
