"""``/healthz``, ``/readyz`` and ``/metrics`` for every service."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from shared.core.errors import NotFound

ReadinessCheck = Callable[[], Awaitable[str | None]]

METRICS_REGISTRY: web.AppKey[CollectorRegistry] = web.AppKey("postwire_metrics_registry",
                                                             CollectorRegistry)
"""The registry ``/metrics`` serves (set by :func:`add_health_routes`)."""
METRICS_ELSEWHERE: web.AppKey[bool] = web.AppKey("postwire_metrics_elsewhere", bool)
"""True when ``/metrics`` is served on its own listener; the app's route then answers 404."""


def add_metrics_route(app: web.Application, registry: CollectorRegistry) -> None:
    """``GET /metrics`` (Prometheus text) of ``registry`` on ``app``."""

    async def metrics(request: web.Request) -> web.Response:
        if request.app.get(METRICS_ELSEWHERE):
            raise NotFound("no such route")
        response = web.Response(body=generate_latest(registry))
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response

    app.router.add_get("/metrics", metrics)


def add_health_routes(app: web.Application, checks: Sequence[ReadinessCheck],
                      registry: CollectorRegistry) -> None:
    """Register the three routes.

    ``/readyz`` runs every check concurrently; each returns None when fine or a reason string.
    """

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(_: web.Request) -> web.Response:
        reasons = [r for r in await asyncio.gather(*(check() for check in checks)) if r]
        if reasons:
            body = {"error": {"type": "unavailable", "message": "; ".join(reasons), "param": None}}
            return web.Response(status=503, body=orjson.dumps(body),
                                content_type="application/json")
        return web.json_response({"status": "ready"})

    app[METRICS_REGISTRY] = registry
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    add_metrics_route(app, registry)
