"""The admin service's housekeeping loop: the gauges that describe the whole installation (not
just this process) are refreshed every interval, and expired admin Idempotency-Keys are purged
every 60th round."""

from __future__ import annotations

import asyncio
import logging

import asyncpg

from services.dlq_replay.idempotency import purge_expired
from services.dlq_replay.metrics import AdminMetrics
from shared.tasks import BackgroundLoop

log = logging.getLogger(__name__)

JOB_STATUSES = ("running", "completed", "cancelled", "failed")
_TRANSIENT = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)


async def refresh_gauges(pool: asyncpg.Pool, metrics: AdminMetrics) -> None:
    """Read the dead-letter count and bulk job progress into the gauges. May raise asyncpg
    and OS errors."""
    dead = await pool.fetchval("SELECT count(*) FROM deliveries WHERE status = 'dead'")
    metrics.dead_letters.set(int(dead or 0))
    rows = await pool.fetch(
        "SELECT status, count(*) AS n, coalesce(sum(matched - queued - skipped), 0) AS remaining"
        " FROM replay_jobs WHERE kind = 'bulk' GROUP BY status")
    counts = {r["status"]: int(r["n"]) for r in rows}
    for status in JOB_STATUSES:
        metrics.bulk_jobs.labels(status).set(counts.get(status, 0))
    metrics.bulk_remaining.set(sum(int(r["remaining"]) for r in rows if r["status"] == "running"))


class HousekeepingLoop(BackgroundLoop):
    """Refreshes the gauges every ``interval_s`` and purges expired Idempotency-Keys."""

    TASK_NAME = "admin-housekeeping"

    def __init__(self, pool: asyncpg.Pool, metrics: AdminMetrics, *, interval_s: float,
                 idempotency_window_s: float) -> None:
        self._pool = pool
        self._metrics = metrics
        self._interval_s = interval_s
        self._window_s = idempotency_window_s

    async def _run(self) -> None:
        rounds = 0
        while True:
            try:
                await refresh_gauges(self._pool, self._metrics)
                if rounds % 60 == 0:
                    await purge_expired(self._pool, self._window_s)
            except _TRANSIENT as exc:
                log.warning("admin housekeeping round failed: %r", exc)
            except Exception:  # a gauge is not worth a dead loop
                log.exception("admin housekeeping round failed")
            rounds += 1
            await asyncio.sleep(self._interval_s)
