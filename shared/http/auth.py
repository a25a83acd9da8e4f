"""Bearer-token authentication for an aiohttp app (constant-time comparison).

Health, readiness, metrics and the OpenAPI document (``/openapi.json``) are open; everything
else needs a token from the service's own list. Ingest API keys and admin tokens are separate
lists, so a token of one service is refused (401) by the other.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable

from aiohttp import web
from aiohttp.typedefs import Middleware

from shared.core.errors import AuthenticationFailed
from shared.http.types import Handler

OPEN_PATHS = frozenset({"/healthz", "/readyz", "/metrics", "/openapi.json"})
REQUEST_PRINCIPAL: web.RequestKey[str] = web.RequestKey("postwire_principal", str)


def _bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def bearer_auth(principals: Iterable[tuple[str, str]],
                self_authenticated: tuple[str, ...] = ()) -> Middleware:
    """Middleware accepting ``(principal_name, token)`` pairs; sets ``request[REQUEST_PRINCIPAL]``.

    Every candidate token is compared (hmac.compare_digest), so timing does not reveal which
    prefix matched or how many tokens exist. Paths starting with one of ``self_authenticated``
    are passed through untouched: their handlers check a credential of their own (the
    merchant feed's tokens) and must refuse on their own.
    """
    table = [(name, token.encode()) for name, token in principals]

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in OPEN_PATHS or (
                self_authenticated and request.path.startswith(self_authenticated)):
            return await handler(request)
        presented = _bearer(request)
        if presented is None:
            raise AuthenticationFailed("missing or malformed Authorization: Bearer header")
        # aiohttp decodes header bytes that are not UTF-8 as surrogate escapes: encode them
        # back as they came, so a byte like 0xff is just a token that matches nothing (401).
        candidate = presented.encode("utf-8", "surrogateescape")
        matched: str | None = None
        for name, token in table:
            if hmac.compare_digest(candidate, token) and matched is None:
                matched = name
        if matched is None:
            raise AuthenticationFailed("invalid credentials")
        request[REQUEST_PRINCIPAL] = matched
        return await handler(request)

    return middleware


def principal_of(request: web.Request) -> str:
    """The authenticated principal (operator name on the admin API, ``api`` on ingest)."""
    value = request.get(REQUEST_PRINCIPAL)
    if not isinstance(value, str):
        raise AuthenticationFailed("not authenticated")
    return value
