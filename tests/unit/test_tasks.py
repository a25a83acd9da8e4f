"""Stopping background loops: cancel every task, wait for each, surface a crash."""

from __future__ import annotations

import asyncio

import pytest

from shared.tasks import cancel_and_wait


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
