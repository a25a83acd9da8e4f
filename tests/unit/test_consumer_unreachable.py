"""The consumer gives up on a broker that stopped answering without waiting out more timeouts.

After the embedded broker restarts, a consumer's connections can stay dead: every log-end read
and every commit times out. The session is re-created once the log ends have been unreadable
for ``UNREADABLE_RECREATE_S``, judged when a read gives up (not when it began), and the dead
session's last commit and leave are not waited for. Closing it survives a client stop that
ends in its own cancellation (aiokafka's does once its connections died).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterator
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, cast

import pytest
from aiokafka import TopicPartition

import services.dispatcher.consumer as consumer_module
from services.dispatcher.consumer import (
    UNREACHABLE_STOP_S,
    UNREADABLE_RECREATE_S,
    DeliveryConsumer,
    bounded,
)
from services.dispatcher.metrics import DispatcherMetrics
from services.dispatcher.offsets import OffsetTracker
from services.dispatcher.pipeline import Pipeline
from services.dispatcher.settings import load_dispatcher_settings
from shared.core.errors import ConfigError

TP = TopicPartition("t.deliveries", 0)


@dataclass
class _Pipeline:
    tracker: OffsetTracker = field(default_factory=OffsetTracker)

    def revoke(self, partitions: object) -> None:
        pass


class _Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def monotonic(self) -> float:
        return self.now


class _DeadConsumer:
    """An aiokafka consumer whose broker no longer answers: it owns one partition."""

    def assignment(self) -> set[TopicPartition]:
        return {TP}


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[_Clock]:
    fake = _Clock(0.0)
    monkeypatch.setattr(consumer_module, "time", SimpleNamespace(monotonic=fake.monotonic))
    yield fake


def _consumer() -> DeliveryConsumer:
    settings = load_dispatcher_settings({
        "POSTWIRE_DATABASE_URL": "postgresql://u@127.0.0.1:5432/db",
        "POSTWIRE_KAFKA_BOOTSTRAP": "127.0.0.1:9092"})
    return DeliveryConsumer(settings, cast(Pipeline, _Pipeline()), DispatcherMetrics(),
                            on_log_lost=lambda: None)


def _reading_that_times_out(clock: _Clock, takes_s: float) -> Any:
    async def check(consumer: object, assigned: object) -> None:
        clock.now += takes_s          # the read waited this long, then gave up
        raise TimeoutError
    return check


async def test_a_read_that_gives_up_past_the_deadline_re_creates_the_consumer(
        clock: _Clock) -> None:
    """The read began 8 s after the last good one and gave up 3 s later: 11 s unreadable.
    Judged at its start (8 s) the session would wait one more round of timeouts."""
    c = _consumer()
    c._session_started_at, c._check_ok_at = 50.0, 100.0
    c._checked_assignment = frozenset({TP})
    clock.now = 100.0 + UNREADABLE_RECREATE_S - 2.0
    c._check = _reading_that_times_out(clock, 3.0)  # type: ignore[method-assign]
    with pytest.raises(ConfigError, match="unreadable"):
        await c._maybe_check(cast(Any, _DeadConsumer()))
    assert c._unreachable


async def test_a_read_that_gives_up_before_the_deadline_is_retried(clock: _Clock) -> None:
    c = _consumer()
    c._session_started_at, c._check_ok_at = 50.0, 100.0
    c._checked_assignment = frozenset({TP})
    clock.now = 100.0 + UNREADABLE_RECREATE_S - 2.0
    c._check = _reading_that_times_out(clock, 1.0)  # type: ignore[method-assign]
    await c._maybe_check(cast(Any, _DeadConsumer()))   # 9 s unreadable: no re-creation yet
    assert not c._unreachable


class _Bounded:
    """Stands in for ``consumer.bounded``: records what was awaited and for how long, runs
    nothing (as if every call timed out)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, float]] = []

    async def __call__(self, awaitable: Awaitable[object], timeout_s: float) -> bool:
        name = getattr(awaitable, "__qualname__", type(awaitable).__name__)
        self.calls.append((name, timeout_s))
        close = getattr(awaitable, "close", None)
        if close is not None:
            close()
        return False


class _StoppableConsumer(_DeadConsumer):
    async def stop(self) -> None:
        await asyncio.Event().wait()


@pytest.mark.parametrize("unreachable", [True, False])
async def test_closing_a_session_whose_broker_stopped_answering_skips_its_commit_and_leave(
        monkeypatch: pytest.MonkeyPatch, unreachable: bool) -> None:
    """Unreachable: no last commit, the stop gets ``UNREACHABLE_STOP_S``. Otherwise (the
    control): the last commit is tried for 5 s and the stop gets 10 s to leave the group."""
    bounded = _Bounded()
    monkeypatch.setattr(consumer_module, "bounded", bounded)
    c = _consumer()
    c._unreachable = unreachable
    await c._close(cast(Any, _StoppableConsumer()))
    if unreachable:
        assert bounded.calls == [("_StoppableConsumer.stop", UNREACHABLE_STOP_S)]
    else:
        assert bounded.calls == [("DeliveryConsumer._maybe_commit", 5.0),
                                 ("_StoppableConsumer.stop", 10.0)]


class _SelfCancellingConsumer(_DeadConsumer):
    """Its stop ends in its own ``CancelledError``, as aiokafka's does after the broker
    connections died: it cancels a helper task (the heartbeat, a pending fetch) and awaits
    it without suppressing the error. Nobody cancelled the caller."""

    async def stop(self) -> None:
        helper = asyncio.create_task(asyncio.Event().wait())
        await asyncio.sleep(0)
        helper.cancel()
        await helper


@pytest.mark.parametrize("closing", [False, True], ids=["session-ended", "consumer-stopping"])
async def test_a_client_stop_that_ends_in_its_own_cancellation_does_not_end_consumption(
        closing: bool) -> None:
    """The session closes normally (and is re-created, or the consumer stops), whether or
    not the dispatcher is stopping it: the client's own cancellation is its failure, not a
    cancellation of the consumer task. Raised to it, it once ended consumption for good."""
    c = _consumer()
    c._unreachable = True
    if closing:
        c._closing.set()

    async def close() -> str:
        await c._close(cast(Any, _SelfCancellingConsumer()))
        return "closed"

    assert await asyncio.create_task(close()) == "closed"


async def test_bounded_counts_an_awaitable_cancelled_from_within_as_unfinished() -> None:
    assert await bounded(_SelfCancellingConsumer().stop(), 1.0) is False
    assert await bounded(asyncio.sleep(0), 1.0) is True
    assert await bounded(asyncio.sleep(3600), 0.01) is False


async def test_bounded_still_passes_on_a_cancellation_of_its_caller() -> None:
    """The control: a caller that is cancelled while it waits is cancelled."""
    waiting = asyncio.create_task(bounded(asyncio.sleep(3600), 60.0))
    await asyncio.sleep(0.01)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
