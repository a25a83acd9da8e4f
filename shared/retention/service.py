"""Wiring for a service: run the retention loop alongside the app (every service does)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping

from aiohttp import web
from prometheus_client import CollectorRegistry

from shared.retention.loop import RetentionLoop
from shared.retention.metrics import RetentionMetrics
from shared.retention.settings import (
    load_drop_pause_s,
    load_retention_interval_s,
    load_retention_policy,
)


def retention_context(dsn: str, registry: CollectorRegistry,
                      env: Mapping[str, str]) -> Callable[[web.Application], AsyncIterator[None]]:
    """A ``cleanup_ctx`` entry that starts the retention loop with the app and stops it on
    shutdown. Reads the retention settings now: raises ConfigError naming a bad variable."""
    loop = RetentionLoop(dsn, load_retention_policy(env), RetentionMetrics(registry),
                         interval_s=load_retention_interval_s(env),
                         pause_s=load_drop_pause_s(env))

    async def run(_: web.Application) -> AsyncIterator[None]:
        loop.start()
        yield
        await loop.stop()

    return run
