"""Memory a pass let go is handed back, with what lives on set aside from collections."""

from __future__ import annotations

import gc
import weakref

import numpy as np

from flows.steps import give_back_freed_memory, what_lives_on_set_aside


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
