"""Background tasks: the one start/stop idiom of every service's loops.

A loop is an ``asyncio.Task`` started by its owner's ``start()``; its owner's ``stop()`` calls
:func:`cancel_and_wait`, which cancels the tasks and returns once each has finished. A loop of
one task subclasses :class:`BackgroundLoop`, which provides both. A task
that ends with CancelledError (the normal case) is done; one that ended with another exception
re-raises it here, so a crash at shutdown is not silent.

Time limits use :func:`within` and :func:`wait_event`, never ``asyncio.wait_for`` (ruff bans
it outside tests): on Python 3.11, ``wait_for`` returns normally when the thing it waits for
finishes in the same loop turn its caller is cancelled, so the cancellation is lost and a loop
around it never stops. A dispatcher ignored SIGTERM that way: its claim loop was cancelled just
as a message woke it.
"""

from __future__ import annotations

import asyncio
import contextlib
from abc import ABC, abstractmethod
from collections.abc import Awaitable
from typing import Any, ClassVar, TypeVar

T = TypeVar("T")


async def cancel_and_wait(*tasks: asyncio.Task[Any] | None) -> None:
    """Cancel every task given (``None`` entries are skipped), then wait for each in order."""
    running = [task for task in tasks if task is not None]
    for task in running:
        task.cancel()
    for task in running:
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def within(awaitable: Awaitable[T], timeout_s: float | None) -> T:
    """Await ``awaitable`` for at most ``timeout_s`` seconds (``None``: no limit). On expiry
    it is cancelled, waited for, and ``TimeoutError`` is raised; a cancellation of the caller
    always propagates, even when ``awaitable`` finished in the same loop turn."""
    async with asyncio.timeout(timeout_s):
        return await awaitable


async def wait_event(event: asyncio.Event, timeout_s: float | None) -> bool:
    """Wait until ``event`` is set, at most ``timeout_s`` seconds; True when it is set."""
    with contextlib.suppress(TimeoutError):
        await within(event.wait(), timeout_s)
    return event.is_set()


class BackgroundLoop(ABC):
    """A service's background loop: one task named :attr:`TASK_NAME` running :meth:`_run`,
    started by :meth:`start` and stopped (cancelled and awaited) by :meth:`stop`."""

    TASK_NAME: ClassVar[str]
    _task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start the loop's task in the running event loop."""
        self._task = asyncio.create_task(self._run(), name=self.TASK_NAME)

    async def stop(self) -> None:
        """Cancel the task and wait for it (a no-op when it never started)."""
        await cancel_and_wait(self._task)

    @abstractmethod
    async def _run(self) -> None:
        """The loop's body; runs until cancelled."""
