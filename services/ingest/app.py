"""Wiring of the ingest service: resources, middlewares, routes, background loops."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

from aiohttp import web

from services.ingest.context import CTX, IngestContext
from services.ingest.endpoints_api import setup_endpoints
from services.ingest.events_api import setup_events
from services.ingest.feed_api import FEED_PREFIX, setup_feed
from services.ingest.key_scope import account_scope
from services.ingest.metrics import IngestMetrics
from services.ingest.openapi import document
from services.ingest.reconcile_api import setup_reconcile
from services.ingest.settings import IngestSettings
from shared.adapters.kafka.publisher import KafkaPublisher
from shared.adapters.pg.pool import create_pool, ping
from shared.http.auth import bearer_auth
from shared.http.errors import error_middleware
from shared.http.health import add_health_routes
from shared.http.openapi import add_openapi_route
from shared.outbox_relay import OutboxFlusher, OutboxRelay
from shared.retention.service import retention_context


async def make_app(settings: IngestSettings) -> web.Application:
    """Build the app; resources open here and close in the app's cleanup (SIGTERM drains)."""
    common = settings.common
    metrics = IngestMetrics()
    retention = retention_context(common.database_url, metrics.registry, os.environ)
    pool = await create_pool(common.database_url, max_size=common.db_pool_size,
                             application_name="postwire-ingest")
    publisher = KafkaPublisher.from_settings(common)
    await publisher.start()
    flusher = OutboxFlusher(pool, publisher)
    relay = OutboxRelay(pool, publisher, on_backlog=metrics.outbox_backlog.set)
    ctx = IngestContext(settings=settings, pool=pool, publisher=publisher, flusher=flusher,
                        metrics=metrics)

    app = web.Application(
        middlewares=[metrics.http.middleware(), error_middleware,
                     bearer_auth(((key.label, key.secret) for key in settings.api_key_scopes),
                                 self_authenticated=(FEED_PREFIX,)),
                     account_scope(settings.api_key_scopes, pool)],
        client_max_size=1024 * 1024,  # not used: bodies are streamed by shared.http.body
    )
    app[CTX] = ctx

    async def resources(_: web.Application) -> AsyncIterator[None]:
        flusher.start()
        relay.start()
        yield
        await relay.stop()
        await flusher.stop()
        await publisher.stop()
        await pool.close()

    app.cleanup_ctx.append(resources)
    app.cleanup_ctx.append(retention)
    setup_endpoints(app, ctx)
    setup_events(app, ctx)
    setup_reconcile(app, ctx)
    setup_feed(app, ctx)
    add_health_routes(app, [lambda: ping(pool), publisher.ping], metrics.registry)
    add_openapi_route(app, document())
    return app
