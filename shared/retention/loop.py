"""The maintenance loop every service runs; an advisory lock lets one process at a time work.

Each round opens its own connection (``DETACH ... CONCURRENTLY`` cannot run on a pooled
connection inside a transaction, and a session advisory lock must not leak into the pool),
tries ``pg_try_advisory_lock``; the holder runs :func:`purge.run_round`, the others skip. So
partitions stay ahead as long as any service runs, and two rounds never overlap.
"""

from __future__ import annotations

import asyncio
import logging
import time

import asyncpg

from shared.core.retention import RetentionPolicy
from shared.core.timefmt import utcnow
from shared.logging import fields
from shared.retention.metrics import RetentionMetrics
from shared.retention.purge import RoundReport, run_round
from shared.tasks import BackgroundLoop

log = logging.getLogger(__name__)

LOCK_ID = 0x72657465_6E74696F & 0x7FFFFFFFFFFFFFFF  # "retentio"
_TRANSIENT = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)


async def run_locked_round(dsn: str, policy: RetentionPolicy,
                           metrics: RetentionMetrics | None = None, *,
                           pause_s: float = 0.0) -> RoundReport | None:
    """One round under the cluster-wide advisory lock; None when another process holds it.
    Raises asyncpg and OS errors (the lock goes with the connection)."""
    conn = await asyncpg.connect(dsn)
    try:
        if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", LOCK_ID):
            if metrics is not None:
                metrics.rounds.labels("skipped").inc()
            return None
        started = time.perf_counter()
        report = await run_round(conn, policy, utcnow(), pause_s=pause_s)
        if metrics is not None:
            _observe(metrics, report, time.perf_counter() - started)
        return report
    finally:
        await conn.close()  # releases the advisory lock


def _observe(metrics: RetentionMetrics, report: RoundReport, seconds: float) -> None:
    metrics.rounds.labels("deferred" if report.deferred else "ok").inc()
    metrics.round_seconds.observe(seconds)
    metrics.partitions_created.inc(len(report.created))
    metrics.days_dropped.inc(len(report.dropped))
    metrics.drop_seconds.inc(report.drop_seconds)
    metrics.days_blocked.set(len(report.blocked))
    metrics.rows_deleted.labels("dead_letters").inc(report.dead_letters_deleted)
    metrics.rows_deleted.labels("audit_log").inc(report.audit_rows_deleted)
    metrics.rows_deleted.labels("events").inc(report.account_events_deleted)
    metrics.last_success.set(time.time())


class RetentionLoop(BackgroundLoop):
    """Runs a round at start and then every ``interval_s``; ``stop`` cancels a round in flight
    (what it finished stays done; the next round, here or elsewhere, resumes)."""

    TASK_NAME = "retention"

    def __init__(self, dsn: str, policy: RetentionPolicy, metrics: RetentionMetrics, *,
                 interval_s: float, pause_s: float) -> None:
        self._dsn = dsn
        self._pause_s = pause_s
        self._policy = policy
        self._metrics = metrics
        self._interval_s = interval_s

    async def _run(self) -> None:
        while True:
            try:
                report = await run_locked_round(self._dsn, self._policy, self._metrics,
                                                pause_s=self._pause_s)
                if report is not None and (report.created or report.dropped or report.blocked):
                    log.info("retention round: created %d partitions, dropped %s, blocked %s",
                             len(report.created), report.dropped or "nothing",
                             report.blocked or "nothing",
                             extra=fields(partitions_created=len(report.created),
                                          days_dropped=report.dropped,
                                          days_blocked=report.blocked,
                                          dead_letters_deleted=report.dead_letters_deleted))
            except _TRANSIENT as exc:
                self._metrics.rounds.labels("failed").inc()
                log.warning("retention round failed (retried next interval): %r", exc)
            except Exception:  # keep the loop alive; the next round starts over
                self._metrics.rounds.labels("failed").inc()
                log.exception("retention round failed")
            await asyncio.sleep(self._interval_s)
