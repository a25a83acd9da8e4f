"""The services' collector settings: start-up objects frozen, thresholds raised, cycles freed."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from shared import gc_tuning


@pytest.fixture
def restore_gc() -> Iterator[None]:
    before = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*before)


@pytest.mark.usefixtures("restore_gc")
def test_tune_gc_freezes_what_exists_and_raises_the_thresholds() -> None:
    gc.unfreeze()
    assert gc.get_freeze_count() == 0
    gc_tuning.tune_gc()
    assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == (gc_tuning.YOUNG_THRESHOLD, gc_tuning.MIDDLE_THRESHOLD,
                                  gc_tuning.OLD_THRESHOLD)
    assert gc.get_threshold()[0] > 700  # well above CPython's default


class _Node:
    def __init__(self) -> None:
        self.other: _Node | None = None


@pytest.mark.usefixtures("restore_gc")
def test_cycles_made_after_tuning_are_still_collected() -> None:
    gc_tuning.tune_gc()
    a, b = _Node(), _Node()
    a.other, b.other = b, a
    probe = weakref.ref(a)
    del a, b
    assert probe() is not None  # only the cyclic collector can free a cycle
    # net allocations of tracked objects alone must trigger a collection that frees it
    kept: list[list[int]] = [[] for _ in range(gc_tuning.YOUNG_THRESHOLD * 2)]
    assert probe() is None
    assert len(kept) == gc_tuning.YOUNG_THRESHOLD * 2
