"""Stopping background loops: cancel every task, wait for each, surface a crash."""

from __future__ import annotations

import asyncio

import pytest

from shared.tasks import BackgroundLoop, cancel_and_wait


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
