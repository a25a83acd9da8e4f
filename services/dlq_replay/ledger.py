"""The ledger route and its metrics loop.

``GET /admin/v1/ledger?from=&to=`` (admin token): the ledger of acceptance window
``[from, to)`` (:mod:`shared.core.ledger`); ``to`` defaults to now and ``from`` to 24 hours
before ``to``. Always 200 when it could be read: ``balanced`` and ``checks`` say whether the
invariants hold.

The same figures, for the rolling window of the last ``POSTWIRE_LEDGER_WINDOW_S`` seconds
(3600), plus the oldest open delivery of all time, are refreshed every
``POSTWIRE_LEDGER_REFRESH_S`` seconds (30) into gauges, so a Prometheus scrape costs nothing
and the database pays one range scan of the window per refresh, not one per scrape.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import timedelta

import asyncpg
from aiohttp import web

from services.dlq_replay.context import CTX
from services.dlq_replay.ledger_sql import oldest_open, read_ledger
from services.dlq_replay.metrics import AdminMetrics
from shared.config import env_float
from shared.core.delivery_status import STATUSES
from shared.core.errors import InvalidRequest
from shared.core.ledger import Ledger
from shared.core.timefmt import utcnow
from shared.http.query import check_query, query_ts
from shared.logging import fields
from shared.tasks import BackgroundLoop

log = logging.getLogger(__name__)
DEFAULT_SPAN = timedelta(hours=24)
_TRANSIENT = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)


@dataclass(frozen=True)
class LedgerSettings:
    """Read once at start; a bad value raises ConfigError naming the variable."""

    window_s: float    # the metrics describe events accepted this long ago until now
    refresh_s: float   # how often the metrics are recomputed


def load_ledger_settings(env: Mapping[str, str]) -> LedgerSettings:
    return LedgerSettings(
        window_s=env_float(env, "POSTWIRE_LEDGER_WINDOW_S", 3600.0, 1.0, 30 * 86400.0),
        refresh_s=env_float(env, "POSTWIRE_LEDGER_REFRESH_S", 30.0, 0.1, 3600.0))


async def get_ledger(request: web.Request) -> web.Response:
    """``GET /admin/v1/ledger``."""
    check_query(request, ("from", "to"))
    until = query_ts(request, "to") or utcnow()
    since = query_ts(request, "from")
    if since is None:
        try:
            since = until - DEFAULT_SPAN
        except OverflowError as exc:  # to within a day of year 1
            raise InvalidRequest("to is too early to default from (give from)",
                                 param="to") from exc
    if since >= until:
        raise InvalidRequest("from must be earlier than to", param="from")
    ledger = await read_ledger(request.app[CTX].pool, since, until)
    return web.json_response(ledger.to_json())


def publish(metrics: AdminMetrics, ledger: Ledger, oldest_age_s: float) -> None:
    """Copy one refresh into the gauges."""
    metrics.ledger_events_accepted.set(ledger.events_accepted)
    metrics.ledger_deliveries_created.set(ledger.deliveries_created)
    for status in STATUSES:
        metrics.ledger_deliveries.labels(status).set(ledger.by_status.get(status, 0))
    metrics.ledger_unbalanced.set(abs(ledger.deliveries_created - ledger.accounted)
                                  + ledger.dead_without_dead_letter)
    metrics.ledger_oldest_open_age.set(oldest_age_s)
    metrics.ledger_refreshed.set(time.time())


class LedgerLoop(BackgroundLoop):
    """Refreshes the ledger gauges; a failed refresh keeps the previous values (their
    ``postwire_ledger_refreshed_timestamp_seconds`` then ages, which is what to alert on)."""

    TASK_NAME = "admin-ledger"

    def __init__(self, pool: asyncpg.Pool, metrics: AdminMetrics,
                 settings: LedgerSettings) -> None:
        self._pool = pool
        self._metrics = metrics
        self._settings = settings
        metrics.ledger_window.set(settings.window_s)

    async def refresh(self) -> Ledger:
        """One refresh; raises asyncpg/OS errors."""
        since = utcnow() - timedelta(seconds=self._settings.window_s)
        ledger = await read_ledger(self._pool, since, None)
        oldest = await oldest_open(self._pool)
        publish(self._metrics, ledger, 0.0 if oldest is None else oldest.age_s)
        if not ledger.balanced:
            log.error("the ledger does not balance", extra=fields(
                checks=[c.to_json() for c in ledger.checks if not c.holds]))
        return ledger

    async def _run(self) -> None:
        while True:
            try:
                await self.refresh()
            except _TRANSIENT as exc:
                log.warning("ledger refresh failed: %r", exc)
            except Exception:  # a gauge is not worth a dead loop
                log.exception("ledger refresh failed")
            await asyncio.sleep(self._settings.refresh_s)


def setup_ledger(app: web.Application, metrics: AdminMetrics, pool: asyncpg.Pool,
                 env: Mapping[str, str] | None = None) -> None:
    """Add the ledger route and run the metrics loop for the app's lifetime."""
    loop = LedgerLoop(pool, metrics, load_ledger_settings(os.environ if env is None else env))

    async def lifetime(_: web.Application) -> AsyncIterator[None]:
        loop.start()
        yield
        await loop.stop()

    app.cleanup_ctx.append(lifetime)
    app.router.add_get("/admin/v1/ledger", get_ledger)
