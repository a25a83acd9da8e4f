"""Getting outbox rows onto Kafka: a fast path right after commit, and a relay for leftovers.

The fast path (:class:`OutboxFlusher`) publishes what a transaction just committed and deletes
it: the deletes of everything acknowledged within ``cleanup_delay_s`` (0.5 s) go together in
one transaction committed asynchronously (``forget_published``), so the fast path adds no
commit of its own per batch (at 200 events/s it was one fsync per event). Whatever it misses
(the process died between commit and publish, the broker was down) is
picked up by :class:`OutboxRelay`, which every process runs: it locks rows older than a few
seconds with ``FOR UPDATE SKIP LOCKED``, publishes them and deletes them in one transaction, so
several relays never publish the same row at once. Kafka may see a message twice (at least
once); consumers check Postgres before acting, so a duplicate is harmless. The relay is also
the fallback of the Postgres-only fast path (:mod:`shared.core.wakeup`): a notified message
whose row no dispatcher's claim deleted is published once it is ``min_age_s`` old.

An idle relay costs one autocommit statement a second per process (the backlog count, which
also says whether anything is due); the relay transaction runs only when a row is due.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence

import asyncpg

from shared.adapters.kafka.publisher import KafkaPublisher, Message, PublishFailed
from shared.adapters.pg.outbox import (
    delete_outbox,
    forget_published,
    lock_due_outbox,
    outbox_state,
)
from shared.adapters.pg.pool import acquire_settled
from shared.tasks import BackgroundLoop, cancel_and_wait, within

log = logging.getLogger(__name__)


class OutboxFlusher:
    """Publishes freshly committed outbox rows in the background, batching across commits.

    Acknowledged rows are deleted ``cleanup_delay_s`` after the first of them was published,
    or as soon as ``max_batch`` wait, in one statement (see :func:`forget_published`). The
    delay must stay well below the relay's ``min_age_s`` (3 s), or the relay would publish
    rows the fast path already did (harmless, but wasted).
    """

    def __init__(self, pool: asyncpg.Pool, publisher: KafkaPublisher,
                 max_batch: int = 2000, cleanup_delay_s: float = 0.5) -> None:
        self._pool = pool
        self._publisher = publisher
        self._queue: asyncio.Queue[tuple[list[int], list[Message]]] = asyncio.Queue()
        self._max_batch = max_batch
        self._cleanup_delay_s = cleanup_delay_s
        self._published: list[int] = []          # acknowledged, not deleted yet
        self._cleanup_at = 0.0                   # loop time the oldest of them is due
        self._task: asyncio.Task[None] | None = None

    def submit(self, ids: Sequence[int], messages: Sequence[Message]) -> None:
        """Queue committed rows for publishing; never blocks, never raises."""
        if ids:
            self._queue.put_nowait((list(ids), list(messages)))

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="outbox-flusher")

    async def stop(self) -> None:
        """Publish what is queued (best effort), then stop; the relay covers the rest."""
        if self._task is None:
            return
        with contextlib.suppress(TimeoutError):
            await within(self._drain_now(), 5)
        await cancel_and_wait(self._task)
        with contextlib.suppress(TimeoutError):
            await within(self._cleanup(), 5)

    async def _drain_now(self) -> None:
        while not self._queue.empty():
            await self._flush([self._queue.get_nowait()])
        await self._cleanup()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._published:
                await self._flush([await self._queue.get()])
            else:
                try:
                    first = await within(
                        self._queue.get(), max(0.0, self._cleanup_at - loop.time()))
                except TimeoutError:
                    await self._cleanup()
                    continue
                await self._flush([first])
            if self._published and (len(self._published) >= self._max_batch
                                    or loop.time() >= self._cleanup_at):
                await self._cleanup()

    async def _cleanup(self) -> None:
        """Delete what the broker acknowledged; on failure the relay publishes it again."""
        ids, self._published = self._published, []
        if not ids:
            return
        try:
            async with acquire_settled(self._pool) as conn:
                await forget_published(conn, ids)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning("outbox cleanup failed, relay will re-publish: %s", exc)

    async def _flush(self, batch: list[tuple[list[int], list[Message]]]) -> None:
        count = len(batch[0][0])
        while not self._queue.empty() and count < self._max_batch:
            batch.append(self._queue.get_nowait())
            count += len(batch[-1][0])
        ids = [i for part_ids, _ in batch for i in part_ids]
        messages = [m for _, part_messages in batch for m in part_messages]
        try:
            await self._publisher.publish(messages)
        except PublishFailed as exc:
            log.warning("publish after commit failed, relay will retry: %s", exc)
            return
        if not self._published:
            self._cleanup_at = asyncio.get_running_loop().time() + self._cleanup_delay_s
        self._published.extend(ids)


class OutboxRelay(BackgroundLoop):
    """Background loop that publishes outbox rows the fast path left behind."""

    TASK_NAME = "outbox-relay"

    def __init__(self, pool: asyncpg.Pool, publisher: KafkaPublisher, *, min_age_s: float = 3.0,
                 interval_s: float = 1.0, batch: int = 1000,
                 on_backlog: Callable[[int], None] | None = None) -> None:
        self._pool = pool
        self._publisher = publisher
        self._min_age_s = min_age_s
        self._interval_s = interval_s
        self._batch = batch
        self._on_backlog = on_backlog

    async def relay_once(self) -> int:
        """Publish one batch of due rows; returns how many were published (0 when none due).

        Raises PublishFailed when the broker did not take them (rows stay for the next round).
        """
        async with acquire_settled(self._pool) as conn, conn.transaction():
            due = await lock_due_outbox(conn, self._min_age_s, self._batch)
            if not due:
                return 0
            await self._publisher.publish([m for _, m in due])
            await delete_outbox(conn, [i for i, _ in due])
        log.info("outbox relay published %d messages", len(due))
        return len(due)

    async def _run(self) -> None:
        delay = self._interval_s
        while True:
            try:
                async with acquire_settled(self._pool) as conn:
                    backlog, due = await outbox_state(conn, self._min_age_s)
                if self._on_backlog is not None:
                    self._on_backlog(backlog)
                if due:
                    while await self.relay_once() == self._batch:
                        pass
                delay = self._interval_s
            except PublishFailed as exc:
                delay = min(delay * 2, 10.0)
                log.warning("outbox relay: broker unavailable (%s); retry in %.1fs", exc, delay)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                delay = min(delay * 2, 10.0)
                log.warning("outbox relay: postgres unavailable (%s); retry in %.1fs", exc, delay)
            await asyncio.sleep(delay)
