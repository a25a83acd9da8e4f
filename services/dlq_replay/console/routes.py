"""Wiring of the browser routes into the admin app: pages, static files, the portal-session
API route, the lag sampler and the purge of expired sessions."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web

from services.dlq_replay.console.lag import LagSampler
from services.dlq_replay.console.operator import setup_operator_routes
from services.dlq_replay.console.portal import setup_portal_routes
from services.dlq_replay.console.portal_api import post_portal_session
from services.dlq_replay.console.sessions import purge_expired
from services.dlq_replay.console.signin import setup_signin_routes
from services.dlq_replay.console.state import CONSOLE, ConsoleState
from services.dlq_replay.context import AdminContext
from shared.tasks import cancel_and_wait

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).with_name("static")
PURGE_INTERVAL_S = 600.0


async def _purge_loop(ctx: AdminContext) -> None:
    while True:
        await asyncio.sleep(PURGE_INTERVAL_S)
        try:
            await purge_expired(ctx.pool)
        except Exception as exc:  # a purge is not worth a dead loop; expired rows are ignored
            log.warning("session purge failed: %r", exc)


def setup_console(app: web.Application, ctx: AdminContext) -> None:
    """Add ``/console``, ``/portal``, ``/console/static`` and ``POST /admin/v1/portal-sessions``
    (the app's middleware must route browser paths through :func:`guard.route_auth`)."""
    settings = ctx.settings
    lag = LagSampler(settings.common, settings.dispatcher_group, settings.lag_sample_interval_s)
    app[CONSOLE] = ConsoleState(lag=lag, session_lifetime_s=settings.console_session_s)

    async def lifetime(_: web.Application) -> AsyncIterator[None]:
        lag.start()
        purge = asyncio.create_task(_purge_loop(ctx), name="console-session-purge")
        yield
        await cancel_and_wait(purge)
        await lag.stop()

    app.cleanup_ctx.append(lifetime)
    app.router.add_post("/admin/v1/portal-sessions", post_portal_session)
    app.router.add_static("/console/static/", STATIC_DIR, show_index=False,
                          follow_symlinks=False, append_version=False)
    setup_signin_routes(app)
    setup_operator_routes(app)
    setup_portal_routes(app)
