"""``/healthz``, ``/readyz`` and ``/metrics`` for every service."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Gauge, generate_latest

from shared.core.errors import NotFound
from shared.tasks import cancel_and_wait

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


READY_REFRESH_S = 10.0


def add_health_routes(app: web.Application, checks: Sequence[ReadinessCheck],
                      registry: CollectorRegistry) -> None:
    """Register the three routes, and the ``postwire_ready`` gauge on ``registry``.

    ``/readyz`` runs every check concurrently; each returns None when fine or a reason string.
    The gauge is 1 when the last run passed, 0 otherwise; besides each ``/readyz``, a
    background loop runs the checks every ``READY_REFRESH_S`` seconds, so alerting on
    ``postwire_ready == 0`` works without a probe polling the service.
    """
    ready = Gauge("postwire_ready", "1 when the last readiness check passed (Postgres and "
                  "Kafka reachable; dispatcher: consuming), else 0", registry=registry)

    async def run_checks() -> list[str]:
        reasons = [r for r in await asyncio.gather(*(check() for check in checks)) if r]
        ready.set(0 if reasons else 1)
        return reasons

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(_: web.Request) -> web.Response:
        reasons = await run_checks()
        if reasons:
            body = {"error": {"type": "unavailable", "message": "; ".join(reasons), "param": None}}
            return web.Response(status=503, body=orjson.dumps(body),
                                content_type="application/json")
        return web.json_response({"status": "ready"})

    async def refresh_loop() -> None:
        while True:
            await asyncio.sleep(READY_REFRESH_S)
            try:
                await run_checks()
            except Exception:  # a check that raises is a failed check, not a dead loop
                ready.set(0)

    async def refresher(_: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(refresh_loop())
        yield
        await cancel_and_wait(task)

    app[METRICS_REGISTRY] = registry
    app.cleanup_ctx.append(refresher)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    add_metrics_route(app, registry)
