"""Running a unit of work in one transaction, retried when Postgres aborted it on a conflict
(deadlock or serialization failure): the one deadlock-retrying transaction of every service."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

import asyncpg

T = TypeVar("T")

RETRYABLE = (asyncpg.exceptions.DeadlockDetectedError, asyncpg.exceptions.SerializationError)


async def in_transaction(pool: asyncpg.Pool, work: Callable[[asyncpg.Connection], Awaitable[T]],
                         attempts: int = 4) -> T:
    """Run ``work(conn)`` inside a fresh transaction and commit.

    A deadlock or serialization failure rolls everything back and runs ``work`` again (up to
    ``attempts`` times, with a short random pause), so ``work`` must only have effects through
    ``conn``. Any other exception rolls back and propagates.
    """
    for attempt in range(1, attempts + 1):
        try:
            async with pool.acquire() as conn, conn.transaction():
                return await work(conn)
        except RETRYABLE:
            if attempt == attempts:
                raise
            await asyncio.sleep(random.uniform(0.005, 0.02) * attempt)
    raise AssertionError("unreachable")
