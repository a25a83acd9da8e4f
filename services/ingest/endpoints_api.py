"""The Endpoints half of the ingest API (docs/api.md, "Endpoints"): merchant webhook destinations.

Routes (all behind the ingest API key)::

    POST   /v1/endpoints                          201 endpoint object, with ``secret``
    GET    /v1/endpoints?account_id=&limit=&cursor=   list, newest first
    GET    /v1/endpoints/{id}                     endpoint object
    PATCH  /v1/endpoints/{id}                     endpoint object
    DELETE /v1/endpoints/{id}                     204; pending/retrying deliveries -> cancelled
    GET    /v1/endpoints/{id}/secret              {"secret"}
    POST   /v1/endpoints/{id}/rotate-secret       {"secret"} (the new one)

A malformed or unknown id, or a deleted endpoint, is a 404. Every change notifies the other
processes' endpoint caches inside its transaction and invalidates this process's cache after
commit. URLs pass the SSRF guard (:func:`check_url_target`) on create, on a URL patch and on
re-enabling (``{"enabled": true}`` checks the stored URL again).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from services.ingest.context import IngestContext
from services.ingest.endpoint_cache import ENDPOINT_CACHE, EndpointCache
from services.ingest.key_scope import require_account
from shared.adapters.dns import Resolver, resolve_host
from shared.adapters.pg.txn import in_transaction
from shared.core.cursor import decode_cursor, encode_cursor
from shared.core.paging import page_of
from shared.endpoints import operations as ops
from shared.endpoints import store
from shared.endpoints.operations import render_endpoint
from shared.endpoints.validation import (
    check_url_target,
    validate_account_id,
    validate_create,
    validate_patch,
    validate_rotate,
)
from shared.http.body import read_json_object
from shared.http.query import check_query, query_limit
from shared.http.responses import json_response

ENDPOINT_RESOLVER: web.AppKey[Resolver] = web.AppKey("endpoint_resolver")
"""Resolves URL hosts for the SSRF guard; tests may replace it before the app starts."""

MAX_BODY_BYTES = 64 * 1024
_CURSOR_KIND = "endpoints"


def _endpoint_id(request: web.Request) -> str:
    return ops.checked_id(request.match_info["endpoint_id"])


async def _read_optional_body(request: web.Request) -> dict[str, Any]:
    """The JSON object body, or ``{}`` when the request has no body at all."""
    if not request.body_exists:
        return {}
    return await read_json_object(request, MAX_BODY_BYTES)


class _Handlers:
    """Request handlers sharing the service context, the cache and the resolver."""

    def __init__(self, ctx: IngestContext, cache: EndpointCache) -> None:
        self.ctx = ctx
        self.cache = cache

    async def _check_url(self, request: web.Request, url: str) -> None:
        await check_url_target(url, allow_private=self.ctx.settings.common.allow_private_targets,
                               resolve=request.app[ENDPOINT_RESOLVER],
                               denied_ports=self.ctx.settings.denied_target_ports)

    async def create(self, request: web.Request) -> web.Response:
        check_query(request, ())
        spec = validate_create(await read_json_object(request, MAX_BODY_BYTES))
        require_account(request, spec.account_id)
        await self._check_url(request, spec.url)
        created = await in_transaction(self.ctx.pool,
                                       lambda conn: ops.create_endpoint(conn, spec))
        self.cache.invalidate(spec.account_id)
        return json_response({**render_endpoint(created.row), "secret": created.secret}, status=201)

    async def list_endpoints(self, request: web.Request) -> web.Response:
        check_query(request, ("account_id", "limit", "cursor"))
        limit = query_limit(request)
        account_id = request.query.get("account_id")
        if account_id is not None:
            validate_account_id(account_id)
        cursor = request.query.get("cursor")
        before_id: str | None = None
        if cursor is not None:
            key = decode_cursor(_CURSOR_KIND, cursor, (str,))
            before_id = str(key[0])
        async with self.ctx.pool.acquire() as conn:
            rows = await store.list_endpoints(conn, account_id, before_id, limit + 1)
        page = page_of(rows, limit, render_endpoint,
                       lambda last: encode_cursor(_CURSOR_KIND, [last["id"]]))
        return json_response(page.to_json())

    async def get(self, request: web.Request) -> web.Response:
        check_query(request, ())
        endpoint_id = _endpoint_id(request)
        async with self.ctx.pool.acquire() as conn:
            row = await ops.fetch_endpoint(conn, endpoint_id)
        return json_response(render_endpoint(row))

    async def patch(self, request: web.Request) -> web.Response:
        check_query(request, ())
        endpoint_id = _endpoint_id(request)
        changes = validate_patch(await read_json_object(request, MAX_BODY_BYTES))
        if "url" in changes:
            await self._check_url(request, changes["url"])
        elif changes.get("enabled") is True:
            # re-enabling sends to the stored URL again: it must pass today's guard (it may
            # predate the guard or a stricter setting, or its name may now resolve privately)
            async with self.ctx.pool.acquire() as conn:
                current = await ops.fetch_endpoint(conn, endpoint_id)
            await self._check_url(request, current["url"])
        row = await in_transaction(self.ctx.pool,
                                   lambda conn: ops.patch_endpoint(conn, endpoint_id, changes))
        self.cache.invalidate(row["account_id"])
        return json_response(render_endpoint(row))

    async def delete(self, request: web.Request) -> web.Response:
        check_query(request, ())
        endpoint_id = _endpoint_id(request)
        account_id, _ = await in_transaction(self.ctx.pool,
                                             lambda conn: ops.delete_endpoint(conn, endpoint_id))
        self.cache.invalidate(account_id)
        return web.Response(status=204)

    async def get_secret(self, request: web.Request) -> web.Response:
        check_query(request, ())
        endpoint_id = _endpoint_id(request)
        async with self.ctx.pool.acquire() as conn:
            secret = await ops.reveal_secret(conn, endpoint_id)
        return json_response({"secret": secret})

    async def rotate_secret(self, request: web.Request) -> web.Response:
        check_query(request, ())
        endpoint_id = _endpoint_id(request)
        grace_period_s = validate_rotate(await _read_optional_body(request))
        account_id, secret = await in_transaction(
            self.ctx.pool,
            lambda conn: ops.rotate_endpoint_secret(conn, endpoint_id, grace_period_s))
        self.cache.invalidate(account_id)
        return json_response({"secret": secret})


def setup_endpoints(app: web.Application, ctx: IngestContext) -> None:
    """Add the endpoint routes, ``app[ENDPOINT_CACHE]`` and ``app[ENDPOINT_RESOLVER]``.

    The cache starts listening when the app starts and stops when it cleans up (a
    ``cleanup_ctx`` appended here, so it runs inside the pool's lifetime).
    """
    cache = EndpointCache(ctx.pool, ctx.metrics, dsn=ctx.settings.common.database_url)
    app[ENDPOINT_CACHE] = cache
    app[ENDPOINT_RESOLVER] = resolve_host

    async def cache_lifetime(_: web.Application) -> AsyncIterator[None]:
        await cache.start()
        yield
        await cache.stop()

    app.cleanup_ctx.append(cache_lifetime)
    handlers = _Handlers(ctx, cache)
    app.router.add_post("/v1/endpoints", handlers.create)
    app.router.add_get("/v1/endpoints", handlers.list_endpoints)
    app.router.add_get("/v1/endpoints/{endpoint_id}", handlers.get)
    app.router.add_patch("/v1/endpoints/{endpoint_id}", handlers.patch)
    app.router.add_delete("/v1/endpoints/{endpoint_id}", handlers.delete)
    app.router.add_get("/v1/endpoints/{endpoint_id}/secret", handlers.get_secret)
    app.router.add_post("/v1/endpoints/{endpoint_id}/rotate-secret", handlers.rotate_secret)
