"""Account scopes of ingest API keys, enforced on every authenticated route.

A key limited to some accounts (``acct_1+acct_2:KEY`` in ``POSTWIRE_API_KEYS``, see
:mod:`shared.core.api_keys`) is checked here, before any handler runs:

- a route naming an object (``{endpoint_id}``, ``{event_id}``, ``{delivery_id}`` in its path)
  whose account is outside the scope is answered 404 ``not_found``, exactly as a missing one,
  so a key cannot even learn which ids exist elsewhere;
- an ``account_id`` query parameter outside the scope is 403 ``forbidden``;
- a ``GET`` of a collection without ``account_id`` is 403 (a scoped key lists one account at
  a time; nothing is filtered silently).

Request bodies are read by the handlers, which call :func:`require_account` for the
``account_id`` they carry (``POST /v1/endpoints``, ``POST /v1/events``, each item of
``POST /v1/events/batch``). Keys without a scope pass through untouched, with no query.
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg
from aiohttp import web
from aiohttp.typedefs import Middleware

from shared.core.api_keys import ApiKey, scope_label
from shared.core.errors import Forbidden, NotFound
from shared.http.auth import REQUEST_PRINCIPAL
from shared.http.types import Handler

ACCOUNT_SCOPE: web.RequestKey[frozenset[str]] = web.RequestKey("postwire_account_scope",
                                                               frozenset)

#: path parameter -> (SQL that finds the owning account, what a 404 calls it)
_OWNER_SQL: dict[str, tuple[str, str]] = {
    "endpoint_id": ("SELECT account_id FROM endpoints WHERE id = $1 AND deleted_at IS NULL",
                    "endpoint"),
    "event_id": ("SELECT account_id FROM events WHERE id = $1", "event"),
    "delivery_id": ("SELECT account_id FROM deliveries WHERE id = $1", "delivery"),
}


def require_account(request: web.Request, account_id: str, param: str = "account_id") -> None:
    """Raise Forbidden when the request's key may not act for ``account_id``."""
    error = account_error(request, account_id, param)
    if error is not None:
        raise error


def account_error(request: web.Request, account_id: str,
                  param: str = "account_id") -> Forbidden | None:
    """The 403 for ``account_id`` when the request's key is scoped elsewhere, else None (for
    per-item errors of a batch)."""
    scope = request.get(ACCOUNT_SCOPE)
    if scope is None or account_id in scope:
        return None
    return Forbidden(f"this API key may only act for account(s) {scope_label(scope)}",
                     param=param)


async def _check_owner(pool: asyncpg.Pool, request: web.Request, scope: frozenset[str]) -> None:
    for name, (sql, what) in _OWNER_SQL.items():
        object_id = request.match_info.get(name)
        if object_id is None:
            continue
        async with pool.acquire() as conn:
            owner = await conn.fetchval(sql, object_id)
        if owner is not None and owner not in scope:
            raise NotFound(f"no {what} {object_id!r}")  # the same answer as a missing one


def account_scope(keys: Sequence[ApiKey], pool: asyncpg.Pool) -> Middleware:
    """Middleware (after ``bearer_auth``, whose principal names are the keys' labels) that
    enforces the authenticated key's account scope as the module docstring says."""
    scopes = {key.label: key.accounts for key in keys if key.accounts is not None}

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        principal = request.get(REQUEST_PRINCIPAL)
        scope = scopes.get(principal) if isinstance(principal, str) else None
        if scope is None or request.match_info.http_exception is not None:
            return await handler(request)  # unscoped key, or no such route (404/405 as usual)
        request[ACCOUNT_SCOPE] = scope
        account_id = request.query.get("account_id")
        if account_id is not None:
            require_account(request, account_id)
        names_object = any(name in request.match_info for name in _OWNER_SQL)
        if names_object:
            await _check_owner(pool, request, scope)
        elif request.method == "GET" and account_id is None:
            raise Forbidden(f"this API key may only act for account(s) {scope_label(scope)}: "
                            f"pass account_id", param="account_id")
        return await handler(request)

    return middleware
