"""Running a service: uvloop, one aiohttp app, SIGTERM drains and exits.

``run_service`` is what every ``python -m services.X`` calls. A ConfigError at start prints one
line and exits with status 2. The app is served through :mod:`shared.http.protocol` (timeouts,
connection limit, protocol errors in the contract's format) with the body limits of
:mod:`shared.http.limits`; every response carries ``Cache-Control: no-store`` and no
``Server`` banner; ``/metrics`` moves to its own listener when ``POSTWIRE_METRICS_PORT`` is set.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter

from shared.config_http import HttpServerSettings
from shared.core.errors import ConfigError
from shared.gc_tuning import tune_gc
from shared.http.health import METRICS_ELSEWHERE, METRICS_REGISTRY, add_metrics_route
from shared.http.limits import BodyBudget, body_limits_middleware
from shared.http.protocol import HardenedAppRunner, ProtocolErrorHook

log = logging.getLogger(__name__)

AppFactory = Callable[[], Awaitable[web.Application]]


async def _response_headers(_: web.Request, response: web.StreamResponse) -> None:
    """No caching of any API answer (some carry secrets); no software banner."""
    response.headers.setdefault("Cache-Control", "no-store")
    response.headers.popall("Server", None)


def _protocol_error_counter(registry: CollectorRegistry | None) -> ProtocolErrorHook:
    if registry is None:
        return lambda _reason: None
    counter = Counter("http_protocol_errors_total",
                      "Requests and connections refused below the app (malformed HTTP, "
                      "timeouts, connection limit), by reason", ["reason"], registry=registry)
    return lambda reason: counter.labels(reason).inc()


async def _start_site(runner: web.AppRunner, host: str, port: int) -> None:
    site = web.TCPSite(runner, host, port, backlog=1024, reuse_address=True)
    try:
        await site.start()
    except OSError as exc:
        raise ConfigError(f"cannot listen on {host}:{port} ({exc.strerror})") from exc


async def serve(make_app: AppFactory, host: str, port: int,
                shutdown_timeout_s: float = 30.0,
                http: HttpServerSettings | None = None) -> None:
    """Serve until SIGTERM or SIGINT, then stop accepting, drain and run the app's cleanups.

    The collector is tuned (:func:`shared.gc_tuning.tune_gc`) once the app is built."""
    limits = http if http is not None else HttpServerSettings()
    app = await make_app()
    registry = app.get(METRICS_REGISTRY)
    app.middlewares.append(body_limits_middleware(BodyBudget(limits.max_inflight_body_bytes),
                                                  limits.body_timeout_s))
    app.on_response_prepare.append(_response_headers)
    metrics_runner: web.AppRunner | None = None
    if limits.metrics_port is not None and registry is not None:
        app[METRICS_ELSEWHERE] = True
        metrics_app = web.Application()
        add_metrics_route(metrics_app, registry)
        metrics_app.on_response_prepare.append(_response_headers)
        metrics_runner = HardenedAppRunner(metrics_app, limits, lambda _reason: None,
                                           access_log=None)
    tune_gc()
    runner = HardenedAppRunner(app, limits, _protocol_error_counter(registry), access_log=None,
                               shutdown_timeout=shutdown_timeout_s)
    await runner.setup()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await _start_site(runner, host, port)
        log.info("listening on http://%s:%d", host, port)
        if metrics_runner is not None and limits.metrics_port is not None:
            await metrics_runner.setup()
            metrics_host = limits.metrics_host or host
            await _start_site(metrics_runner, metrics_host, limits.metrics_port)
            log.info("metrics on http://%s:%d/metrics", metrics_host, limits.metrics_port)
        await stop.wait()
        log.info("shutting down")
    finally:
        if metrics_runner is not None:
            await metrics_runner.cleanup()
        await runner.cleanup()


def run_service(name: str, make_app: AppFactory, host: str, port: int,
                http: HttpServerSettings | None = None) -> None:
    """Entry point body for ``python -m services.<name>``."""
    import uvloop

    try:
        uvloop.run(serve(make_app, host, port, http=http))
    except ConfigError as exc:
        print(f"postwire {name}: {exc}", file=sys.stderr)
        sys.exit(2)
