"""``GET /admin/v1/storage``: storage per table, the oldest retained day and the retention."""

from __future__ import annotations

from aiohttp import web

from services.dlq_replay.context import CTX
from shared.core.retention import RetentionPolicy
from shared.http.query import check_query
from shared.retention.storage import storage_stats

POLICY: web.AppKey[RetentionPolicy] = web.AppKey("retention_policy", RetentionPolicy)


async def get_storage(request: web.Request) -> web.Response:
    """Bytes (heap, indexes, total), approximate rows and partitions per table; the oldest
    retained day; the retention settings and what has been purged (the horizons)."""
    check_query(request, ())
    stats = await storage_stats(request.app[CTX].pool, request.app[POLICY])
    return web.json_response(stats)


def setup_storage_routes(app: web.Application, policy: RetentionPolicy) -> None:
    """Register the storage route; ``policy`` is the retention the service was started with."""
    app[POLICY] = policy
    app.router.add_get("/admin/v1/storage", get_storage)
