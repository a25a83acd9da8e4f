"""Re-publishing from Postgres: the scheduler (parked deliveries that are due) and the sweeper
(deliveries that should be moving but are not).

Both run in every dispatcher and are safe side by side: rows are picked with ``FOR UPDATE SKIP
LOCKED``, marked ``published_at = now()`` and announced through the outbox in the same
transaction, so two dispatchers never announce the same row in the same round, and an
announcement is never lost (the outbox relay retries until the broker acknowledges it). A
duplicate announcement is harmless: the claim step skips what is not claimable.

- Scheduler: open deliveries whose ``next_attempt_at`` has come and that were not announced
  since it was set (a retry, a first-attempt delay, a circuit or overflow park); ingest and
  replays announce their own deliveries.
- Sweeper: (a) leases that expired (a dispatcher crashed mid-attempt) and were not announced
  since; (b) open deliveries with no lease that have not changed nor been announced for
  ``sweep_stale_s`` (their message was lost: a broker that restarted empty). Keyed deliveries
  only when they head their key; the rest follow when the head finishes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

import asyncpg

from services.dispatcher.metrics import DispatcherMetrics
from services.dispatcher.outcome_sql import delivery_message
from shared.adapters.kafka.publisher import Message
from shared.adapters.pg.outbox import insert_outbox

log = logging.getLogger(__name__)

_RETURNING = ("RETURNING d.id, d.event_id, d.endpoint_id, d.account_id, d.ordering_key, "
              "d.sequence, d.generation")

# "Not announced since it became due". A retry or a park moves next_attempt_at past the last
# announcement (published_at, or the creation, which ingest announces itself): ingest sets
# next_attempt_at = created_at + schedule[0], so only a first-attempt delay makes it due
# unannounced. A replay (next_attempt_at = now) gets one extra, harmless announcement.
_UNANNOUNCED = "next_attempt_at > coalesce(published_at, created_at)"

_DUE_SQL = f"""
WITH due AS (
    SELECT id FROM deliveries
    WHERE status IN ('pending', 'retrying') AND next_attempt_at <= now() AND {_UNANNOUNCED}
      AND (lease_until IS NULL OR lease_until <= now())
    ORDER BY next_attempt_at LIMIT $1
    FOR UPDATE SKIP LOCKED
)
UPDATE deliveries d SET published_at = now() FROM due WHERE d.id = due.id
{_RETURNING}
"""

_HEAD = """(d.ordering_key IS NULL OR NOT EXISTS (
        SELECT 1 FROM deliveries p
        WHERE p.endpoint_id = d.endpoint_id AND p.ordering_key = d.ordering_key
          AND p.status IN ('pending', 'retrying') AND p.sequence < d.sequence))"""

_EXPIRED_SQL = f"""
WITH stuck AS (
    SELECT d.id FROM deliveries d
    WHERE d.lease_until IS NOT NULL AND d.lease_until <= now()
      AND d.status IN ('pending', 'retrying')
      AND (d.published_at IS NULL OR d.published_at < d.lease_until)
    LIMIT $1
    FOR UPDATE OF d SKIP LOCKED
)
UPDATE deliveries d SET published_at = now() FROM stuck WHERE d.id = stuck.id
{_RETURNING}
"""

_STALE_SQL = f"""
WITH stuck AS (
    SELECT d.id FROM deliveries d
    WHERE d.status IN ('pending', 'retrying')
      AND d.updated_at < now() - make_interval(secs => $2)
      AND (d.published_at IS NULL OR d.published_at < now() - make_interval(secs => $2))
      AND (d.next_attempt_at IS NULL OR d.next_attempt_at <= now())
      AND d.lease_until IS NULL
      AND {_HEAD}
    LIMIT $1
    FOR UPDATE OF d SKIP LOCKED
)
UPDATE deliveries d SET published_at = now() FROM stuck WHERE d.id = stuck.id
{_RETURNING}
"""

_BACKLOG_SQL = f"""
SELECT count(*) FROM deliveries
WHERE status IN ('pending', 'retrying') AND next_attempt_at <= now() AND {_UNANNOUNCED}
"""

Publish = Callable[[list[int], list[Message]], None]
_DB_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError)


class Republisher:
    """The scheduler and sweeper loops of one dispatcher."""

    def __init__(self, pool: asyncpg.Pool, publish: Publish, metrics: DispatcherMetrics, *,
                 scheduler_interval_s: float, sweep_interval_s: float, sweep_stale_s: float,
                 batch: int = 1000) -> None:
        self._pool = pool
        self._publish = publish
        self._metrics = metrics
        self._scheduler_interval_s = scheduler_interval_s
        self._sweep_interval_s = sweep_interval_s
        self._sweep_stale_s = sweep_stale_s
        self._batch = batch
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._loop(self.schedule_once, self._scheduler_interval_s),
                                name="scheduler"),
            asyncio.create_task(self._loop(self.sweep_once, self._sweep_interval_s),
                                name="sweeper"),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _announce(self, sql: str, cause: str, *args: object) -> int:
        async with self._pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(sql, self._batch, *args)
            messages = [delivery_message(r) for r in rows]
            ids = await insert_outbox(conn, messages)
        self._publish(ids, messages)
        if rows:
            self._metrics.republished.labels(cause).inc(len(rows))
            log.log(logging.DEBUG if cause == "due" else logging.INFO,
                    "re-published %d deliveries (%s)", len(rows), cause)
        return len(rows)

    async def schedule_once(self) -> int:
        """Announce due parked deliveries (one batch); returns how many."""
        return await self._announce(_DUE_SQL, "due")

    async def sweep_once(self) -> int:
        """Announce expired leases and stale deliveries (one batch each); returns how many."""
        count = await self._announce(_EXPIRED_SQL, "lease_expired")
        count += await self._announce(_STALE_SQL, "stale", self._sweep_stale_s)
        backlog = await self._pool.fetchval(_BACKLOG_SQL)
        self._metrics.scheduler_backlog.set(int(backlog or 0))
        return count

    async def _loop(self, step: Callable[[], Awaitable[int]], interval_s: float) -> None:
        while True:
            try:
                if await step() >= self._batch:
                    continue  # more is due: go again at once
            except _DB_ERRORS as exc:
                log.warning("re-publish loop: postgres unavailable (%s)", exc)
            except Exception:  # a bug must not stop the loop that recovers lost work
                log.exception("re-publish loop crashed; continuing")
            await asyncio.sleep(interval_s)
