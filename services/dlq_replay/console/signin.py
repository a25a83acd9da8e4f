"""Signing in to the console with an admin token, and out again.

``GET /console/login`` shows the form with a double-submit CSRF cookie; ``POST /console/login``
checks the token against every ``POSTWIRE_ADMIN_TOKENS`` entry in constant time and, on a
match, opens a session (audited ``console.sign_in``, target the operator) and sets its cookie.
Failed attempts are throttled per client address (:mod:`.signin_throttle`: more than 10
within a minute answers 429 until the oldest ages out) and logged.
``POST /console/logout`` deletes the session row and clears the cookie.
"""

from __future__ import annotations

import hmac
import logging
import time

import asyncpg
from aiohttp import web

from services.dlq_replay.audit import write_audit
from services.dlq_replay.console.guard import (
    COOKIE,
    CSRF_FIELD,
    clear_session_cookie,
    safe_next,
    see_other,
    set_session_cookie,
)
from services.dlq_replay.console.render import render_page
from services.dlq_replay.console.sessions import create_session, end_session, new_token
from services.dlq_replay.console.state import CONSOLE
from services.dlq_replay.context import CTX
from shared.adapters.pg.txn import in_transaction
from shared.core.errors import Forbidden, RateLimited
from shared.logging import fields

log = logging.getLogger(__name__)

LOGIN_CSRF_COOKIE = "postwire_login_csrf"


def _form(request: web.Request, csrf: str, next_path: str, status: int = 200,
          error: str | None = None) -> web.Response:
    return render_page("login.html", http_status=status, kind="console", session=None,
                       path=request.path, csrf=csrf, error=error, next=next_path)


async def login_form(request: web.Request) -> web.Response:
    """``GET /console/login``: the token form, with a login CSRF cookie (double submit)."""
    token = new_token()
    response = _form(request, token, safe_next(request.query.get("next")))
    response.set_cookie(LOGIN_CSRF_COOKIE, token, path="/console/login", httponly=True,
                        samesite="Strict", max_age=3600)
    return response


def operator_for(tokens: tuple[tuple[str, str], ...], presented: str) -> str | None:
    """The operator whose token is ``presented``; every token is compared (constant time)."""
    matched = None
    for name, token in tokens:
        if hmac.compare_digest(presented.encode(), token.encode()) and matched is None:
            matched = name
    return matched


async def login(request: web.Request) -> web.StreamResponse:
    """``POST /console/login``: an admin token becomes a session cookie."""
    form = await request.post()
    cookie = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    sent = form.get(CSRF_FIELD)
    if not cookie or not isinstance(sent, str) or not hmac.compare_digest(cookie.encode(),
                                                                          sent.encode()):
        raise Forbidden("the sign-in form expired; reload the page and try again")
    state = request.app[CONSOLE]
    client = request.remote or "unknown"
    now = time.monotonic()
    wait_s = state.throttle.retry_after_s(client, now)
    if wait_s > 0:
        raise RateLimited(f"too many failed sign-ins; try again in {int(wait_s) + 1} s")
    token = form.get("token")
    ctx = request.app[CTX]
    operator = operator_for(ctx.settings.admin_tokens, token if isinstance(token, str) else "")
    if operator is None:
        state.throttle.failed(client, now)
        log.warning("console sign-in refused", extra=fields(client=client))
        return _form(request, cookie, safe_next(form.get("next")), 401,
                     "That admin token is not valid.")
    state.throttle.succeeded(client)

    async def work(conn: asyncpg.Connection) -> str:
        value, _ = await create_session(conn, kind="console", principal=operator,
                                        lifetime_s=state.session_lifetime_s)
        await write_audit(conn, operator=operator, action="console.sign_in", target=operator,
                          reason=None, details={"client": client})
        return value

    value = await in_transaction(ctx.pool, work)
    log.info("console sign-in", extra=fields(operator=operator, client=client))
    response = see_other(safe_next(form.get("next")))
    set_session_cookie(response, request, "console", value, state.session_lifetime_s)
    response.del_cookie(LOGIN_CSRF_COOKIE, path="/console/login")
    return response


async def logout(request: web.Request) -> web.StreamResponse:
    """``POST /console/logout``: the session ends on the server, the cookie is cleared."""
    token = request.cookies.get(COOKIE["console"])
    if token:
        await end_session(request.app[CTX].pool, token)
    response = see_other("/console/login")
    clear_session_cookie(response, "console")
    return response


def setup_signin_routes(app: web.Application) -> None:
    app.router.add_get("/console/login", login_form)
    app.router.add_post("/console/login", login)
    app.router.add_post("/console/logout", logout)
