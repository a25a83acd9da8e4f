"""Wiring of the admin and replay service: resources, middlewares, routes, background loops."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable

from aiohttp import web

from services.dlq_replay.audit_api import setup_audit_routes
from services.dlq_replay.console.guard import route_auth
from services.dlq_replay.console.routes import setup_console
from services.dlq_replay.context import CTX, AdminContext
from services.dlq_replay.dead_letters_api import setup_dead_letter_routes
from services.dlq_replay.events_api import setup_event_routes
from services.dlq_replay.housekeeping import HousekeepingLoop
from services.dlq_replay.ledger import setup_ledger
from services.dlq_replay.metrics import AdminMetrics
from services.dlq_replay.openapi import document
from services.dlq_replay.replays_api import setup_replay_routes
from services.dlq_replay.settings import AdminSettings
from services.dlq_replay.storage_api import setup_storage_routes
from services.dlq_replay.worker import BulkReplayWorker
from shared.adapters.kafka.publisher import KafkaPublisher
from shared.adapters.pg.pool import create_pool, ping
from shared.http.auth import bearer_auth
from shared.http.errors import error_middleware
from shared.http.health import add_health_routes
from shared.http.openapi import add_openapi_route
from shared.outbox_relay import OutboxFlusher, OutboxRelay
from shared.retention.service import retention_context
from shared.retention.settings import load_retention_policy

HOUSEKEEPING_INTERVAL_S = 5.0


def _lifecycle(ctx: AdminContext, relay: OutboxRelay, housekeeping: HousekeepingLoop
               ) -> Callable[[web.Application], AsyncIterator[None]]:
    """Start the background loops with the app; on shutdown stop them in reverse order (the
    worker releases its job leases), then close Kafka and Postgres."""

    async def resources(_: web.Application) -> AsyncIterator[None]:
        ctx.flusher.start()
        relay.start()
        ctx.worker.start()
        housekeeping.start()
        yield
        await housekeeping.stop()
        await ctx.worker.stop()
        await relay.stop()
        await ctx.flusher.stop()
        await ctx.publisher.stop()
        await ctx.pool.close()

    return resources


async def make_app(settings: AdminSettings) -> web.Application:
    """Build the app; resources open here and close in the app's cleanup (SIGTERM drains).

    Raises ConfigError (one line) when Postgres is unreachable or its schema is out of date.
    """
    common = settings.common
    metrics = AdminMetrics()
    retention = retention_context(common.database_url, metrics.registry, os.environ)
    retention_policy = load_retention_policy(os.environ)
    pool = await create_pool(common.database_url, max_size=common.db_pool_size,
                             application_name="postwire-admin")
    publisher = KafkaPublisher.from_settings(common)
    await publisher.start()
    flusher = OutboxFlusher(pool, publisher)
    relay = OutboxRelay(pool, publisher, on_backlog=metrics.outbox_backlog.set)
    worker = BulkReplayWorker(pool, flusher, metrics, settings)
    housekeeping = HousekeepingLoop(pool, metrics, interval_s=HOUSEKEEPING_INTERVAL_S,
                                    idempotency_window_s=settings.idempotency_window_s)
    ctx = AdminContext(settings=settings, pool=pool, publisher=publisher, flusher=flusher,
                       worker=worker, metrics=metrics)

    app = web.Application(
        middlewares=[metrics.http.middleware(), error_middleware,
                     route_auth(bearer_auth(settings.admin_tokens))],
        client_max_size=1024 * 1024,
    )
    app[CTX] = ctx

    app.cleanup_ctx.append(_lifecycle(ctx, relay, housekeeping))
    setup_ledger(app, metrics, pool)
    app.cleanup_ctx.append(retention)
    setup_storage_routes(app, retention_policy)
    setup_dead_letter_routes(app)
    setup_event_routes(app)
    setup_replay_routes(app)
    setup_audit_routes(app)
    setup_console(app, ctx)
    add_health_routes(app, [lambda: ping(pool), publisher.ping], metrics.registry)
    add_openapi_route(app, document())
    return app
