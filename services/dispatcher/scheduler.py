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
- Lost-log recovery (``request_recovery``, called by the consumer when the broker's log went
  backwards): at once, every open, due, unleased delivery (head of its key) last announced
  before that moment is announced again, in batches until none is left, instead of waiting for
  the stale window. Requests arriving while one runs extend it to the later moment.
- Lag: once a second, how many open deliveries Postgres says are due but not announced (the
  scheduler's backlog, plus those still waiting for a lost-log re-announcement) goes to the
  metrics, where it is added to the broker lag (``postwire_consumer_lag``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime

import asyncpg

from services.dispatcher.metrics import DispatcherMetrics
from shared.adapters.kafka.publisher import Message
from shared.adapters.pg.announce import announce
from shared.adapters.pg.pool import acquire_settled
from shared.core.delivery_status import OPEN_SQL
from shared.tasks import cancel_and_wait

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
    WHERE status IN {OPEN_SQL} AND next_attempt_at <= now() AND {_UNANNOUNCED}
      AND (lease_until IS NULL OR lease_until <= now())
    ORDER BY next_attempt_at LIMIT $1
    FOR UPDATE SKIP LOCKED
)
UPDATE deliveries d SET published_at = now() FROM due WHERE d.id = due.id
{_RETURNING}
"""

_HEAD = f"""(d.ordering_key IS NULL OR NOT EXISTS (
        SELECT 1 FROM deliveries p
        WHERE p.endpoint_id = d.endpoint_id AND p.ordering_key = d.ordering_key
          AND p.status IN {OPEN_SQL} AND p.sequence < d.sequence))"""

_EXPIRED_SQL = f"""
WITH stuck AS (
    SELECT d.id FROM deliveries d
    WHERE d.lease_until IS NOT NULL AND d.lease_until <= now()
      AND d.status IN {OPEN_SQL}
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
    WHERE d.status IN {OPEN_SQL}
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
WHERE status IN {OPEN_SQL} AND next_attempt_at <= now() AND {_UNANNOUNCED}
"""

# Announced (or created) before the moment the log was found to have gone backwards, so its
# message may be gone; still open, due and unleased (an expired lease counts as none).
_LOST_WHERE = f"""d.status IN {OPEN_SQL}
      AND coalesce(d.published_at, d.created_at) < $2
      AND (d.next_attempt_at IS NULL OR d.next_attempt_at <= now())
      AND (d.lease_until IS NULL OR d.lease_until <= now())
      AND {_HEAD}"""

_LOST_SQL = f"""
WITH lost AS (
    SELECT d.id FROM deliveries d
    WHERE {_LOST_WHERE}
    LIMIT $1
    FOR UPDATE OF d SKIP LOCKED
)
UPDATE deliveries d SET published_at = now() FROM lost WHERE d.id = lost.id
{_RETURNING}
"""

_LOST_COUNT_SQL = f"SELECT count(*) FROM deliveries d WHERE {_LOST_WHERE.replace('$2', '$1')}"
LAG_INTERVAL_S = 1.0

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
        self._recover = asyncio.Event()
        self._lost_cutoff: datetime | None = None  # database clock; set while one is pending

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._recovery_loop(), name="lost-log-recovery"),
            asyncio.create_task(self._lag_loop(), name="unannounced-lag"),
            asyncio.create_task(self._loop(self.schedule_once, self._scheduler_interval_s),
                                name="scheduler"),
            asyncio.create_task(self._loop(self.sweep_once, self._sweep_interval_s),
                                name="sweeper"),
        ]

    async def stop(self) -> None:
        await cancel_and_wait(*self._tasks)

    def request_recovery(self) -> None:
        """The broker's log went backwards: re-announce, at once and in the background, every
        open delivery whose message may be lost (see the module docstring). Never blocks."""
        self._recover.set()

    @property
    def recovering(self) -> bool:
        """True from a recovery request until its re-announcement has committed."""
        return self._recover.is_set() or self._lost_cutoff is not None

    async def recover_lost_once(self) -> int:
        """Run one recovery now: take the database's clock as the cutoff and announce every
        lost candidate before it, batch after batch. Returns how many were announced."""
        cutoff = await self._pool.fetchval("SELECT now()")
        if self._lost_cutoff is None or cutoff > self._lost_cutoff:
            self._lost_cutoff = cutoff
        total = 0
        while True:
            count = await self._announce(_LOST_SQL, "log_lost", self._lost_cutoff)
            total += count
            if count < self._batch:
                break
        self._lost_cutoff = None
        log.warning("log went backwards: re-announced %d open deliveries", total)
        return total

    async def _recovery_loop(self) -> None:
        while True:
            await self._recover.wait()
            self._recover.clear()
            try:
                await self.recover_lost_once()
            except _DB_ERRORS as exc:
                log.warning("lost-log recovery: postgres unavailable (%s); retrying", exc)
                self._recover.set()
                await asyncio.sleep(0.5)
            except Exception:  # a bug must not stop the loop that recovers lost work
                log.exception("lost-log recovery crashed; retrying")
                self._recover.set()
                await asyncio.sleep(1.0)

    async def unannounced_count(self) -> tuple[int, int]:
        """(due but never announced since, waiting for a lost-log re-announcement)."""
        backlog = int(await self._pool.fetchval(_BACKLOG_SQL) or 0)
        cutoff = self._lost_cutoff
        lost = 0
        if cutoff is not None:
            lost = int(await self._pool.fetchval(_LOST_COUNT_SQL, cutoff) or 0)
        return backlog, lost

    async def _lag_loop(self) -> None:
        while True:
            try:
                backlog, lost = await self.unannounced_count()
                self._metrics.scheduler_backlog.set(backlog)
                self._metrics.set_postgres_lag(backlog + lost)
            except _DB_ERRORS as exc:
                log.debug("lag: postgres unavailable (%s)", exc)
            except Exception:
                log.exception("lag observation crashed; continuing")
            await asyncio.sleep(LAG_INTERVAL_S)

    async def _announce(self, sql: str, cause: str, *args: object) -> int:
        async with acquire_settled(self._pool) as conn, conn.transaction():
            rows = await conn.fetch(sql, self._batch, *args)
            messages, ids = await announce(conn, rows)
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
