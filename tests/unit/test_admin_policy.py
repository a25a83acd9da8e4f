"""Replay policy: per-delivery outcomes, bulk batch sizes and the sliding-window pacer."""

from __future__ import annotations

import pytest

from services.dlq_replay.policy import (
    MAX_BATCH,
    DeliveryState,
    SlidingWindowPacer,
    batch_size,
    classify,
    replayable_statuses,
)


def _state(status: str, enabled: bool = True, deleted: bool = False) -> DeliveryState:
    return DeliveryState("dlv_x", "ep_x", status, enabled, deleted)


@pytest.mark.parametrize(("status", "enabled", "deleted", "include", "expected"), [
    ("dead", True, False, False, "queued"),
    ("dead", True, False, True, "queued"),
    ("succeeded", True, False, False, "not_dead"),
    ("succeeded", True, False, True, "queued"),
    ("cancelled", True, False, True, "not_dead"),
    ("pending", True, False, False, "already_pending"),
    ("retrying", True, False, True, "already_pending"),
    ("pending", False, True, False, "already_pending"),
    ("dead", False, False, False, "endpoint_disabled"),
    ("dead", True, True, False, "endpoint_deleted"),
    ("dead", False, True, False, "endpoint_deleted"),
    ("cancelled", True, True, False, "endpoint_deleted"),
    ("succeeded", False, False, False, "endpoint_disabled"),
])
def test_classify(
        status: str, enabled: bool, deleted: bool, include: bool, expected: str) -> None:
    assert classify(_state(status, enabled, deleted), include) == expected


def test_only_queued_statuses_are_replayable() -> None:
    assert replayable_statuses(False) == ["dead"]
    assert replayable_statuses(True) == ["dead", "succeeded"]


@pytest.mark.parametrize(("rate", "expected"), [
    (1, 1), (9, 1), (10, 1), (11, 2), (100, 10), (1000, 100), (10000, MAX_BATCH)])
def test_batch_size_is_a_tenth_of_a_second(rate: int, expected: int) -> None:
    assert batch_size(rate) == expected


def test_batch_size_refuses_a_zero_rate() -> None:
    with pytest.raises(ValueError):
        batch_size(0)


def _simulate(rate: int, batch: int, total: int) -> list[float]:
    """Send ``total`` items in batches as fast as the pacer allows; return each item's time."""
    pacer = SlidingWindowPacer(rate)
    now, sent = 0.0, list[float]()
    while len(sent) < total:
        n = min(batch, total - len(sent))
        now += pacer.wait_s(n, now)
        started, now = now, now + 0.03  # the step itself takes a while
        pacer.record(n, now, started)
        sent.extend([now] * n)
    return sent


@pytest.mark.parametrize(("rate", "batch"), [(1, 1), (7, 1), (20, 2), (100, 10), (1000, 100)])
def test_no_one_second_window_exceeds_the_rate(rate: int, batch: int) -> None:
    times = _simulate(rate, batch, rate * 5)
    for start in times:
        in_window = sum(1 for t in times if start <= t <= start + 1.0)
        assert in_window <= rate
    # it does not dawdle (5 seconds' worth takes about 5 seconds)...
    assert times[-1] - times[0] < 5.2
    # ...and flows evenly instead of bursting at each second
    for start in times:
        in_half = sum(1 for t in times if start <= t < start + 0.5)
        assert in_half <= rate / 2 + batch


def test_the_first_batch_goes_at_once() -> None:
    pacer = SlidingWindowPacer(100)
    assert pacer.wait_s(10, 123.0) == 0.0


def test_a_batch_larger_than_the_rate_is_refused() -> None:
    with pytest.raises(ValueError):
        SlidingWindowPacer(5).wait_s(6, 0.0)
    with pytest.raises(ValueError):
        SlidingWindowPacer(0)
