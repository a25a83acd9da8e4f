"""Group commit of finished attempts: many outcomes share one transaction and one fsync.

:meth:`OutcomeWriter.submit` never blocks. The batching is
:class:`shared.batching.BatchCollector` with one flush at a time: a batch closes at ``batch_max``
outcomes or ``batch_wait_ms`` after its first one arrived, and keeps filling while the previous
one is being recorded. Each batch is recorded with :func:`outcome_sql.record_batch`, the outbox
rows it wrote are published after the commit, and the batch is reported as durable through
``on_recorded``. A failed transaction is retried with backoff until it succeeds or the writer is
stopped: an attempt that happened is never dropped while the process lives (after a crash, the
lease expires and the sweeper re-sends).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence

import asyncpg

from services.dispatcher.endpoint_health_plan import HealthChange, plain_successes, plan_health
from services.dispatcher.metrics import DispatcherMetrics, status_class
from services.dispatcher.model import Finished
from services.dispatcher.outcome_sql import (
    LOCK_HEALTH_SQL,
    READ_HEALTH_SQL,
    Recorded,
    health_of,
    record_batch,
    record_plain_successes,
)
from shared.adapters.kafka.publisher import Message
from shared.adapters.pg.outbox import insert_outbox
from shared.adapters.pg.pool import acquire_settled
from shared.batching import BatchCollector, CollectorClosed
from shared.core.backoff import BackoffPolicy
from shared.core.decision import Dead, RetryAt, Succeeded
from shared.core.timefmt import utcnow
from shared.logging import fields

log = logging.getLogger(__name__)

Publish = Callable[[list[int], list[Message]], None]
OnRecorded = Callable[[Sequence[Finished]], None]
_DB_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError)


# Batches up to this many outcomes are recorded on ``small_batch_pool`` (generic plans): a
# custom plan costs about 0.35 ms of planning per batch, a generic one about 7 us more per
# outcome to run once a batch is large (measured: 20 outcomes 51-65 -> 31 us each generic,
# 50: 35-59 -> 29-31, 150: 30-32 -> 37-38; docs/performance.md).
GENERIC_PLAN_MAX_BATCH = 64


class OutcomeWriter:
    """One per dispatcher process; ``owner`` is the lease owner name of the process.

    ``small_batch_pool``: where batches of at most :data:`GENERIC_PLAN_MAX_BATCH` outcomes are
    recorded, a pool planning generically (``create_pool(generic_plans=True)``); larger ones,
    and all of them when None, go to ``pool``."""

    def __init__(self, pool: asyncpg.Pool, owner: str, policy: BackoffPolicy,
                 metrics: DispatcherMetrics, publish: Publish, on_recorded: OnRecorded, *,
                 batch_max: int = 500, batch_wait_ms: int = 2, linger_ms: int | None = None,
                 small_batch_pool: asyncpg.Pool | None = None) -> None:
        """A batch closes ``batch_wait_ms`` after the first outcome something waits for
        arrived (``submit(awaited=True)``), ``linger_ms`` (at least ``batch_wait_ms``; equal
        when None) after the first of the others, or at ``batch_max`` outcomes."""
        self._urgent_wait_s = batch_wait_ms / 1000.0
        linger_s = max(batch_wait_ms if linger_ms is None else linger_ms, batch_wait_ms) / 1000.0
        self._pool = pool
        self._small_batch_pool = small_batch_pool
        self._owner = owner
        self._policy = policy
        self._metrics = metrics
        self._publish = publish
        self._on_recorded = on_recorded
        self._batches: BatchCollector[Finished, bool] = BatchCollector(
            self._record_batch, max_items=batch_max, max_wait_s=linger_s,
            max_in_flight=1, name="outcome-writer")

    def submit(self, item: Finished, awaited: bool = True) -> None:
        """Queue an outcome for the next group commit; never blocks. ``awaited``: something
        waits for this outcome to be recorded (the next delivery of its ordering key, a
        request for its endpoint's slot), so its batch closes after ``batch_wait_ms``; when
        False it may linger up to ``linger_ms`` to share a commit with later outcomes.

        After :meth:`stop` the outcome is not recorded (logged: its lease expires and the
        sweeper re-sends the delivery)."""
        try:
            self._batches.submit((item,), self._urgent_wait_s if awaited else None)
        except CollectorClosed:
            claimed = item.claimed
            log.warning("outcome writer stopped; attempt outcome not recorded", extra=fields(
                event_id=claimed.event_id, delivery_id=claimed.delivery_id,
                endpoint_id=claimed.endpoint_id))

    def start(self) -> None:
        """Start the writer's collector task (inside the running loop)."""
        self._batches.start()

    async def drain(self, timeout_s: float) -> bool:
        """Wait until everything submitted so far is recorded; False on timeout."""
        try:
            async with asyncio.timeout(timeout_s):
                await self._batches.wait_idle()
            return True
        except TimeoutError:
            return False

    async def stop(self) -> None:
        """Stop accepting and cancel whatever is still queued or being recorded (call
        :meth:`drain` first: a cancelled outcome's lease expires and the sweeper re-sends)."""
        await self._batches.abort()

    async def _record_batch(self, batch: list[Finished]) -> list[bool]:
        """The collector's flush: one result per outcome, True when it was recorded. Database
        errors are retried; anything else is a bug, logged with its stack, and the batch stays
        unrecorded (its leases expire and the sweeper re-sends) while later batches go on."""
        try:
            await self._record_with_retry(batch)
        except Exception:
            log.exception("recording %d outcomes failed; they are left to the sweeper",
                          len(batch))
            return [False] * len(batch)
        return [True] * len(batch)

    async def _record_with_retry(self, batch: list[Finished]) -> None:
        delay = 0.05
        while True:
            start = time.perf_counter()
            try:
                recorded, outbox_ids = await self._record(batch)
                break
            except _DB_ERRORS as exc:
                log.warning("recording %d outcomes failed (%s); retry in %.2fs",
                            len(batch), exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
        self._metrics.outcome_commit_seconds.observe(time.perf_counter() - start)
        self._metrics.outcome_batch.observe(len(batch))
        self._publish(outbox_ids, recorded.messages)
        self._observe(batch, recorded)
        self._on_recorded(batch)

    async def _plan(self, conn: asyncpg.Connection,
                    batch: list[Finished]) -> dict[str, HealthChange]:
        """Plan health changes; lock (and re-read) only the endpoints whose health changes."""
        endpoint_ids = sorted({i.claimed.endpoint_id for i in batch})
        rows = await conn.fetch(READ_HEALTH_SQL, endpoint_ids)
        now = rows[0]["now"] if rows else await conn.fetchval("SELECT statement_timestamp()")
        changes = plan_health(batch, {r["endpoint_id"]: health_of(r) for r in rows}, now,
                              self._policy)
        touched = sorted(e for e, c in changes.items() if c.changed or c.disable_reason)
        if not touched:
            return changes
        locked = await conn.fetch(LOCK_HEALTH_SQL, touched)
        now = locked[0]["now"] if locked else now
        subset = [i for i in batch if i.claimed.endpoint_id in set(touched)]
        changes.update(plan_health(subset, {r["endpoint_id"]: health_of(r) for r in locked},
                                   now, self._policy))
        return changes

    async def _record(self, batch: list[Finished]) -> tuple[Recorded, list[int]]:
        """One transaction for the batch: a single statement for plain successes on healthy
        endpoints (the everyday case), the full plan-lock-record transaction otherwise. The
        body awaits every operation and catches nothing, so the connection goes back without
        the pool's probe (``acquire_settled``): the plain case is one round trip in all."""
        small = self._small_batch_pool
        pool = small if small is not None and len(batch) <= GENERIC_PLAN_MAX_BATCH else self._pool
        async with acquire_settled(pool) as conn:
            if plain_successes(batch):
                plain = await record_plain_successes(conn, batch, self._owner)
                if plain is not None:
                    return plain, []
            async with conn.transaction():
                changes = await self._plan(conn, batch)
                recorded = await record_batch(conn, batch, self._owner, changes)
                outbox_ids = await insert_outbox(conn, recorded.messages)
        return recorded, outbox_ids

    def _observe(self, batch: list[Finished], recorded: Recorded) -> None:
        now = utcnow()
        m = self._metrics
        attempts: Counter[tuple[str, str]] = Counter()
        errors: Counter[str] = Counter()
        for item in batch:
            result, claimed, decision = item.result, item.claimed, item.decision
            outcome = ("succeeded" if isinstance(decision, Succeeded)
                       else "retry" if isinstance(decision, RetryAt) else "dead")
            attempts[outcome, status_class(result.status_code)] += 1
            m.attempt_seconds.observe(result.duration_ms / 1000.0)
            if result.failure is not None:
                errors[result.failure.value] += 1
            if isinstance(decision, Succeeded):
                m.delivery_latency.observe(max(0.0, (now - claimed.event_created_at)
                                               .total_seconds()))
                continue
            ctx = fields(event_id=claimed.event_id, delivery_id=claimed.delivery_id,
                         endpoint_id=claimed.endpoint_id, account_id=claimed.account_id,
                         attempt=recorded.attempt_numbers.get(claimed.delivery_id),
                         status_code=result.status_code, error=result.error)
            if isinstance(decision, Dead):
                log.warning("delivery dead: %s", decision.reason, extra=ctx)
            else:
                log.info("attempt failed; retry in %.2fs", decision.delay_s, extra=ctx)
        for (outcome, status), count in attempts.items():
            m.attempts.labels(outcome, status).inc(count)
        for kind, count in errors.items():
            m.attempt_errors.labels(kind).inc(count)
        for reason in recorded.dead.values():
            m.dead_letters.labels(reason).inc()
        killed = sum(1 for msg in recorded.messages if msg.topic == "deadletter")
        extra_dead = killed - len(recorded.dead)
        if extra_dead > 0:
            m.dead_letters.labels("endpoint_disabled").inc(extra_dead)
        for endpoint_id, reason in recorded.disabled.items():
            cause = "gone" if reason == "gone" else "auto_disable"
            m.endpoints_disabled.labels(cause).inc()
            log.warning("endpoint disabled: %s", reason, extra=fields(endpoint_id=endpoint_id))
