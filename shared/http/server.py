"""Running a service: uvloop, one aiohttp app, SIGTERM drains and exits.

``run_service`` is what every ``python -m services.X`` calls. A ConfigError at start prints one
line and exits with status 2.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Awaitable, Callable

from aiohttp import web

from shared.core.errors import ConfigError
from shared.gc_tuning import tune_gc

log = logging.getLogger(__name__)

AppFactory = Callable[[], Awaitable[web.Application]]


async def serve(make_app: AppFactory, host: str, port: int,
                shutdown_timeout_s: float = 30.0) -> None:
    """Serve until SIGTERM or SIGINT, then stop accepting, drain and run the app's cleanups.

    The collector is tuned (:func:`shared.gc_tuning.tune_gc`) once the app is built."""
    app = await make_app()
    tune_gc()
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=shutdown_timeout_s)
    await runner.setup()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        site = web.TCPSite(runner, host, port, backlog=1024, reuse_address=True)
        try:
            await site.start()
        except OSError as exc:
            raise ConfigError(f"cannot listen on {host}:{port} ({exc.strerror})") from exc
        log.info("listening on http://%s:%d", host, port)
        await stop.wait()
        log.info("shutting down")
    finally:
        await runner.cleanup()


def run_service(name: str, make_app: AppFactory, host: str, port: int) -> None:
    """Entry point body for ``python -m services.<name>``."""
    import uvloop

    try:
        uvloop.run(serve(make_app, host, port))
    except ConfigError as exc:
        print(f"postwire {name}: {exc}", file=sys.stderr)
        sys.exit(2)
