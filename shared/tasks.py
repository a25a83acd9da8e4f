"""Stopping background tasks: the one stop idiom of every service's loops.

A loop is an ``asyncio.Task`` started by its owner's ``start()``; its owner's ``stop()`` calls
:func:`cancel_and_wait`, which cancels the tasks and returns once each has finished. A task
that ends with CancelledError (the normal case) is done; one that ended with another exception
re-raises it here, so a crash at shutdown is not silent.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any


async def cancel_and_wait(*tasks: asyncio.Task[Any] | None) -> None:
    """Cancel every task given (``None`` entries are skipped), then wait for each in order."""
    running = [task for task in tasks if task is not None]
    for task in running:
        task.cancel()
    for task in running:
        with contextlib.suppress(asyncio.CancelledError):
            await task
