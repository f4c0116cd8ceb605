"""Memory a pass let go is handed back, with what lives on set aside from collections;
freed memory kept for reuse while the source is read and fingerprinted."""

from __future__ import annotations

import gc
import json
import subprocess
import sys
import weakref
from pathlib import Path

import numpy as np
import pytest

from flows.steps import _LIBC, give_back_freed_memory, what_lives_on_set_aside


class _Node:
    """A reference cycle holding an array, as Prefect's futures hold a task's result."""

    def __init__(self, size: int) -> None:
        self.data = np.ones(size)
        self.me = self


def _cycle(size: int = 1 << 16) -> weakref.ref:
    return weakref.ref(_Node(size))


def test_a_cycle_made_within_is_collected_when_memory_is_given_back():
    with what_lives_on_set_aside():
        made = _cycle()
        assert made() is not None  # a cycle is not freed by its references alone
        give_back_freed_memory()
        assert made() is None


def test_what_lived_on_entry_is_collected_again_once_left():
    before = _Node(16)
    gone = weakref.ref(before)
    with what_lives_on_set_aside():
        assert gc.get_freeze_count() > 0
        del before  # garbage now, but set aside: the collections within skip it
        give_back_freed_memory()
        assert gone() is not None
    assert gc.get_freeze_count() == 0
    gc.collect()
    assert gone() is None


def test_what_lives_on_is_collected_again_after_a_failure_within():
    try:
        with what_lives_on_set_aside():
            raise RuntimeError("a pass failed")
    except RuntimeError:
        pass
    assert gc.get_freeze_count() == 0


# Faults in a block of 64 MB (above glibc's largest threshold for mapping a block on its
# own), written whole and freed, on the main thread: three times before
# `FreedMemoryKept`, three within, three after `close` within (which the end of the block
# must not undo or repeat) and three after; Arrow's allocator at each of those points;
# and how far the heap's top stays raised once twenty blocks of 8 MB are freed, within
# and once closed.
KEPT = """
import ctypes, json, resource
import pyarrow as pa
from flows.steps import _LIBC, FreedMemoryKept

_LIBC.malloc.restype, _LIBC.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
_LIBC.free.argtypes = [ctypes.c_void_p]
_LIBC.sbrk.restype, _LIBC.sbrk.argtypes = ctypes.c_void_p, [ctypes.c_ssize_t]
SIZE = 64 << 20

def faults():
    before = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
    block = _LIBC.malloc(SIZE)
    ctypes.memset(block, 1, SIZE)
    _LIBC.free(block)
    return resource.getrusage(resource.RUSAGE_THREAD).ru_minflt - before

def raised():
    start = _LIBC.sbrk(0)
    blocks = [_LIBC.malloc(8 << 20) for _ in range(20)]
    for block in blocks:
        _LIBC.free(block)
    return _LIBC.sbrk(0) - start

def allocator():
    return pa.default_memory_pool().backend_name

before, arrow = [faults() for _ in range(3)], [allocator()]
with FreedMemoryKept() as kept:
    within = [faults() for _ in range(3)]
    raised_within = raised()
    arrow.append(allocator())
    kept.close()
    closed = [faults() for _ in range(3)]
    raised_closed = raised()
    arrow.append(allocator())
after = [faults() for _ in range(3)]
arrow.append(allocator())
print(json.dumps({"before": before, "within": within, "closed": closed, "after": after,
                  "raised_within": raised_within, "raised_closed": raised_closed,
                  "arrow": arrow}))
"""


@pytest.mark.skipif(getattr(_LIBC, "malloc_trim", None) is None,
                    reason="glibc's allocator only: elsewhere FreedMemoryKept changes nothing")
def test_freed_memory_is_kept_for_reuse_within_and_handed_back_once_closed():
    result = subprocess.run([sys.executable, "-c", KEPT], capture_output=True, text=True,
                            cwd=Path(__file__).parents[1], timeout=120)
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    # Before, each block is mapped afresh, so every page of it faults in (a page a
    # fault, or a huge page a fault where the system makes them for any block).
    assert min(found["before"]) >= 16
    # Within, the block freed is the next one: its pages are there already; and the
    # heap is not trimmed as blocks are freed.
    assert max(found["within"][1:]) < min(found["before"]) // 8
    assert found["raised_within"] >= 64 << 20
    # Once closed, glibc maps such a block on its own again and trims its heap again,
    # and Arrow has its own allocator back; the end of the block changes neither.
    for then in ("closed", "after"):
        assert min(found[then]) >= min(found["before"]) // 2
    assert found["raised_closed"] < 16 << 20
    default = found["arrow"][0]
    assert found["arrow"] == [default, "system", default, default]
