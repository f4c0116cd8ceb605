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
# own), written whole and freed, three times outside `freed_memory_kept`, three within
# and three after; and Arrow's allocator within and after.
KEPT = """
import ctypes, json, resource
import pyarrow as pa
from flows.steps import _LIBC, freed_memory_kept

_LIBC.malloc.restype, _LIBC.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
_LIBC.free.argtypes = [ctypes.c_void_p]
SIZE = 64 << 20

def faults():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    block = _LIBC.malloc(SIZE)
    ctypes.memset(block, 1, SIZE)
    _LIBC.free(block)
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

before = [faults() for _ in range(3)]
arrow_before = pa.default_memory_pool().backend_name
with freed_memory_kept():
    within = [faults() for _ in range(3)]
    arrow_within = pa.default_memory_pool().backend_name
after = [faults() for _ in range(3)]
print(json.dumps({"before": before, "within": within, "after": after,
                  "arrow": [arrow_before, arrow_within, pa.default_memory_pool().backend_name]}))
"""


@pytest.mark.skipif(getattr(_LIBC, "malloc_trim", None) is None,
                    reason="glibc's allocator only: elsewhere freed_memory_kept changes nothing")
def test_freed_memory_is_kept_for_reuse_within_and_handed_back_after():
    result = subprocess.run([sys.executable, "-c", KEPT], capture_output=True, text=True,
                            cwd=Path(__file__).parents[1], timeout=120)
    assert result.returncode == 0, result.stderr
    faults = json.loads(result.stdout)
    # Outside, each block is mapped afresh, so every page of it faults in (a page a
    # fault, or a huge page a fault where the system makes them for any block).
    assert min(faults["before"]) >= 16
    # Within, the block freed is the next one: its pages are there already.
    assert max(faults["within"][1:]) < min(faults["before"]) // 8
    # After, glibc maps such a block on its own again, and Arrow has its own allocator.
    assert min(faults["after"]) >= min(faults["before"]) // 2
    assert faults["arrow"] == [faults["arrow"][0], "system", faults["arrow"][0]]
