"""Stopping background loops: cancel every task, wait for each, surface a crash."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Awaitable, Callable

import pytest

from shared.tasks import BackgroundLoop, cancel_and_wait, wait_event, within


async def test_every_task_is_cancelled_and_finished_on_return() -> None:
    cleaned: list[str] = []

    async def loop(name: str) -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            cleaned.append(name)

    tasks = [asyncio.create_task(loop(n)) for n in ("a", "b")]
    await asyncio.sleep(0)
    await cancel_and_wait(tasks[0], None, tasks[1])
    assert all(t.cancelled() for t in tasks) and cleaned == ["a", "b"]


async def test_a_task_that_crashed_re_raises_its_error() -> None:
    async def crash() -> None:
        raise RuntimeError("boom")

    task = asyncio.create_task(crash())
    await asyncio.sleep(0)
    with pytest.raises(RuntimeError, match="boom"):
        await cancel_and_wait(task)


async def test_nothing_to_stop_is_fine() -> None:
    await cancel_and_wait()
    await cancel_and_wait(None)


async def test_a_background_loop_runs_its_body_under_its_name_until_stopped() -> None:
    class Ticker(BackgroundLoop):
        TASK_NAME = "ticker"

        def __init__(self) -> None:
            self.ticks = 0

        async def _run(self) -> None:
            while True:
                self.ticks += 1
                await asyncio.sleep(0)

    ticker = Ticker()
    await ticker.stop()  # never started: nothing to do
    ticker.start()
    assert any(t.get_name() == "ticker" for t in asyncio.all_tasks())
    await asyncio.sleep(0.01)
    await ticker.stop()
    ticks = ticker.ticks
    await asyncio.sleep(0.01)
    assert ticks > 0 and ticker.ticks == ticks
    assert not any(t.get_name() == "ticker" for t in asyncio.all_tasks())


async def _loop_woken_as_cancelled(wait: Callable[[asyncio.Event], Awaitable[object]]) -> bool:
    """Set a looping waiter's event and cancel it in the same loop turn; True when the loop
    stopped (the cancellation reached it), False when it kept looping."""
    wake, rounds = asyncio.Event(), 0

    async def loop() -> None:
        nonlocal rounds
        while True:
            await wait(wake)
            wake.clear()
            rounds += 1

    task = asyncio.create_task(loop())
    await asyncio.sleep(0.01)
    wake.set()
    task.cancel()
    await asyncio.sleep(0.05)
    stopped = task.done()
    await cancel_and_wait(task)
    return stopped and rounds == 0


async def test_wait_event_keeps_a_cancellation_that_comes_with_the_wake() -> None:
    assert await _loop_woken_as_cancelled(lambda e: wait_event(e, 5.0))
    assert await _loop_woken_as_cancelled(lambda e: within(e.wait(), 5.0))


async def test_asyncio_wait_for_can_lose_that_cancellation_on_python_3_11() -> None:
    """Why the helpers exist (and ruff bans ``asyncio.wait_for`` outside tests): 3.11's
    ``wait_for`` returns the finished result and drops the caller's cancellation; 3.12
    rewrote it on ``asyncio.timeout`` and keeps it."""

    async def old_wait(event: asyncio.Event) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), 5.0)

    assert await _loop_woken_as_cancelled(old_wait) is (sys.version_info >= (3, 12))


async def test_within_returns_the_result_or_raises_timeout_error() -> None:
    assert await within(asyncio.sleep(0, result="done"), 1.0) == "done"
    assert await within(asyncio.sleep(0, result="no limit"), None) == "no limit"
    cancelled = False

    async def slow() -> None:
        nonlocal cancelled
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled = True
            raise

    with pytest.raises(TimeoutError):
        await within(slow(), 0.01)
    assert cancelled, "the late awaitable was cancelled"


async def test_wait_event_says_whether_the_event_was_set() -> None:
    event = asyncio.Event()
    assert await wait_event(event, 0.01) is False
    event.set()
    assert await wait_event(event, 0.01) is True
    assert await wait_event(event, None) is True
