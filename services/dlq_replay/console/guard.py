"""Authentication, CSRF and error pages for the browser routes (``/console``, ``/portal``).

The admin service's API keeps bearer tokens; :func:`route_auth` sends the browser paths through
:func:`web_guard` instead. For those paths:

- a session cookie (``postwire_console`` on ``/console``, ``postwire_portal`` on ``/portal``)
  must name an unexpired ``web_sessions`` row of the right kind, except on the login page, the
  portal's link redemption and the static files; without one the console redirects to its
  login page and the portal answers 401;
- every method but GET/HEAD must carry the session's CSRF token (form field ``csrf_token`` or
  header ``X-CSRF-Token``, compared in constant time), and a present ``Origin`` header must be
  this server's own; otherwise 403 (the sign-in and link-redemption POSTs, which have no
  session yet, get the ``Origin`` check and their own token: the sign-in form's double-submit
  cookie, the link's token);
- API errors become HTML pages (JSON in the contract's format under ``/console/api/``), an
  unexpected error a logged 503 page without details, and every response carries the
  security headers of :mod:`render`.
"""

from __future__ import annotations

import hmac
import logging
from urllib.parse import urlencode

from aiohttp import web
from aiohttp.typedefs import Middleware

from services.dlq_replay.console.render import add_security_headers, render_page
from services.dlq_replay.console.sessions import SessionKind, WebSession, load_session
from services.dlq_replay.context import CTX
from shared.core.errors import (
    ApiError,
    AuthenticationFailed,
    Forbidden,
    NotFound,
    Unavailable,
)
from shared.http.errors import error_response
from shared.http.types import Handler

log = logging.getLogger(__name__)

WEB_SESSION: web.RequestKey[WebSession] = web.RequestKey("postwire_web_session", WebSession)
COOKIE = {"console": "postwire_console", "portal": "postwire_portal"}
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
_PUBLIC = ("/console/login", "/portal/start")
_STATIC = "/console/static/"
_SAFE_METHODS = frozenset({"GET", "HEAD"})


def web_kind(path: str) -> SessionKind | None:
    """``console`` or ``portal`` for a browser path, None for an API path."""
    for kind in ("console", "portal"):
        if path == f"/{kind}" or path.startswith(f"/{kind}/"):
            return kind
    return None


def session_of(request: web.Request) -> WebSession:
    """The request's session (set by the guard on every non-public browser route)."""
    session = request.get(WEB_SESSION)
    if not isinstance(session, WebSession):
        raise AuthenticationFailed("not signed in")
    return session


def is_secure(request: web.Request) -> bool:
    """Whether the browser reached us over HTTPS (directly or through a TLS proxy)."""
    return request.secure or request.headers.get("X-Forwarded-Proto", "").lower() == "https"


def safe_next(value: object) -> str:
    """Where to go after signing in: a console path, never another site (else the overview)."""
    if isinstance(value, str) and value.startswith("/console") and not value.startswith(
            ("/console/login", "/console/api/")) and "\\" not in value and "//" not in value \
            and value.isprintable() and len(value) <= 2048:
        return value
    return "/console"


SAME_SITE = {"console": "Strict", "portal": "Lax"}
"""The console's cookie is never sent on a request another site started. The portal's is
``Lax`` because merchants reach the portal through links in emails and their own tools: a
``Strict`` cookie is not sent on those navigations, so a signed-in merchant would be shown
"session ended". ``Lax`` cookies never ride on cross-site POSTs, and every state change needs
the CSRF token anyway."""


def set_session_cookie(response: web.StreamResponse, request: web.Request, kind: SessionKind,
                       token: str, max_age_s: int) -> None:
    """The session cookie: HttpOnly, SameSite (:data:`SAME_SITE`), scoped to its path, Secure
    over HTTPS."""
    response.set_cookie(COOKIE[kind], token, path=f"/{kind}", max_age=max(0, max_age_s),
                        httponly=True, samesite=SAME_SITE[kind], secure=is_secure(request))


def see_other(location: str) -> web.Response:
    """A 303 redirect to ``location`` that can still carry cookies."""
    return web.Response(status=303, headers={"Location": location})


def clear_session_cookie(response: web.StreamResponse, kind: SessionKind) -> None:
    response.del_cookie(COOKIE[kind], path=f"/{kind}")


def _same_origin(request: web.Request) -> bool:
    origin = request.headers.get("Origin")
    if origin is None or origin == "null":  # not every browser names it; the token still rules
        return True
    return origin == f"{request.scheme}://{request.host}" or (
        is_secure(request) and origin == f"https://{request.host}")


async def check_csrf(request: web.Request, expected: str) -> None:
    """403 unless the request echoes ``expected`` and comes from our own origin."""
    if not _same_origin(request):
        raise Forbidden("cross-origin request refused")
    presented = request.headers.get(CSRF_HEADER)
    if presented is None:
        form = await request.post()
        value = form.get(CSRF_FIELD)
        presented = value if isinstance(value, str) else None
    if presented is None or not hmac.compare_digest(presented.encode(), expected.encode()):
        raise Forbidden("missing or invalid CSRF token; reload the page and try again")


def _error_page(request: web.Request, kind: SessionKind, error: ApiError) -> web.Response:
    if request.path.startswith("/console/api/"):
        return error_response(error)
    session = request.get(WEB_SESSION)
    return render_page("error.html", http_status=error.status, kind=kind, error=error,
                       session=session, path=request.path,
                       csrf=session.csrf_token if session is not None else "")


async def _authenticate(request: web.Request, kind: SessionKind) -> None:
    """Load the session into the request; without one, redirect to sign-in (console pages) or
    raise AuthenticationFailed."""
    token = request.cookies.get(COOKIE[kind])
    session = None if not token else await load_session(request.app[CTX].pool, kind, token)
    if session is not None:
        request[WEB_SESSION] = session
        return
    if kind == "console" and request.method in _SAFE_METHODS \
            and not request.path.startswith("/console/api/"):
        raise web.HTTPSeeOther("/console/login?" + urlencode({"next": request.path_qs}))
    raise AuthenticationFailed(
        "your session has ended; sign in again" if kind == "console" else
        "this portal session has ended; ask for a new portal link")


async def web_guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Guard one browser request (see the module docstring)."""
    kind = web_kind(request.path) or "console"  # route_auth sends only browser paths here
    try:
        if request.path in _PUBLIC and request.method not in _SAFE_METHODS \
                and not _same_origin(request):
            raise Forbidden("cross-origin request refused")
        if not request.path.startswith(_STATIC) and request.path not in _PUBLIC:
            await _authenticate(request, kind)
            if request.method not in _SAFE_METHODS:
                await check_csrf(request, request[WEB_SESSION].csrf_token)
        response = await handler(request)
    except ApiError as exc:
        response = _error_page(request, kind, exc)
    except web.HTTPException as exc:
        if exc.status != 404:
            add_security_headers(exc)
            raise
        response = _error_page(request, kind, NotFound("no such page"))
    except Exception:  # never a stack trace in a page: log it, answer 503
        log.exception("unhandled error on %s %s", request.method, request.path)
        response = _error_page(request, kind, Unavailable("internal error; retry later"))
    add_security_headers(response)
    return response


def route_auth(bearer: Middleware) -> Middleware:
    """Browser paths through :func:`web_guard`, everything else through ``bearer``."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if web_kind(request.path) is not None:
            return await web_guard(request, handler)
        return await bearer(request, handler)

    return middleware
