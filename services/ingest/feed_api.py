"""The merchant catch-up feed, the pull side of push.

Routes::

    GET /v1/feed/{endpoint_id}?limit=&cursor=&since=     feed token (Bearer pwfeed_...)
    GET /v1/endpoints/{endpoint_id}/feed-token           ingest API key -> {"token": ...}

A feed page lists the endpoint's deliveries in acceptance (transaction) order, one item per
event routed to the endpoint::

    {"webhook_id", "event_id", "type", "created_at", "delivery_id", "status",
     "attempt_count", "last_attempt_at", "next_attempt_at", "last_status_code",
     "body": <the exact webhook body object the endpoint is sent>}

``{"data": [...], "has_more": bool, "next_cursor": str}``: unlike other lists, ``next_cursor``
is never null. It is the resume point: keep it, and ask again later from it to get what
arrived since (``has_more`` false means "caught up for now"). Each event is returned exactly
once along a walk of cursors, also while new events arrive (:mod:`services.ingest.feed_sql`).
``since`` (RFC 3339, inclusive, on ``created_at``) narrows a walk that starts without a
cursor. Credentials: :mod:`shared.core.feed_token`; an unknown or deleted endpoint and a
wrong token are both 401, so the feed does not reveal which endpoint ids exist.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from services.ingest import feed_sql
from services.ingest.context import IngestContext
from shared.core.cursor import decode_cursor, encode_cursor
from shared.core.errors import AuthenticationFailed, InvalidRequest, NotFound
from shared.core.feed_token import feed_token_for_key, verify_feed_token
from shared.core.ids import is_valid_id
from shared.core.signing import active_secrets
from shared.core.timefmt import format_ts, utcnow
from shared.http.query import check_query, query_limit, query_str, query_ts

FEED_PREFIX = "/v1/feed/"
_CURSOR_KIND = "feed"


def _bearer(request: web.Request) -> str:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthenticationFailed("missing or malformed Authorization: Bearer header "
                                   "(a feed token, pwfeed_...)")
    return token.strip()


def _position(cursor: str | None, endpoint_id: str) -> feed_sql.FeedPosition:
    if cursor is None:
        return feed_sql.START
    endpoint, txid, delivery_id = decode_cursor(_CURSOR_KIND, cursor, (str, int, str))
    if endpoint != endpoint_id:
        raise InvalidRequest("cursor belongs to another endpoint's feed", param="cursor")
    return feed_sql.FeedPosition(int(txid), str(delivery_id))


def _cursor(endpoint_id: str, position: feed_sql.FeedPosition) -> str:
    return encode_cursor(_CURSOR_KIND, [endpoint_id, position.txid, position.delivery_id])


def render_item(row: Any) -> bytes:
    """One feed item as JSON bytes, with the stored webhook body spliced in verbatim."""
    head = orjson.dumps({
        "webhook_id": row["event_id"], "event_id": row["event_id"], "type": row["type"],
        "created_at": format_ts(row["created_at"]), "delivery_id": row["delivery_id"],
        "status": row["status"], "attempt_count": row["attempt_count"],
        "last_attempt_at": format_ts(row["last_attempt_at"]),
        "next_attempt_at": format_ts(row["next_attempt_at"]),
        "last_status_code": row["last_status_code"]})
    return head[:-1] + b',"body":' + bytes(row["body"]) + b"}"


class FeedHandlers:
    """Feed reads need only the pool; the token check reads the endpoint's secrets."""

    def __init__(self, ctx: IngestContext) -> None:
        self._pool = ctx.pool

    async def _authorise(self, request: web.Request, endpoint_id: str) -> None:
        presented = _bearer(request)
        row = (await feed_sql.fetch_endpoint(self._pool, endpoint_id)
               if is_valid_id(endpoint_id, "ep") else None)
        if row is None or row["deleted_at"] is not None:
            raise AuthenticationFailed("invalid feed token for this endpoint")
        keys = active_secrets(row["secret"], row["previous_secret"],
                              row["previous_secret_expires_at"], utcnow())
        if not verify_feed_token(presented, endpoint_id, keys):
            raise AuthenticationFailed("invalid feed token for this endpoint")

    async def feed(self, request: web.Request) -> web.Response:
        endpoint_id = request.match_info["endpoint_id"]
        await self._authorise(request, endpoint_id)
        check_query(request, ("limit", "cursor", "since"))
        limit = query_limit(request)
        after = _position(query_str(request, "cursor", 1024), endpoint_id)
        since = query_ts(request, "since")
        rows = await feed_sql.fetch_page(self._pool, endpoint_id, after, since, limit + 1)
        page = rows[:limit]
        last = (feed_sql.FeedPosition(int(page[-1]["txid"]), page[-1]["delivery_id"])
                if page else after)
        body = (b'{"data":[' + b",".join(render_item(r) for r in page) + b'],"has_more":'
                + (b"true" if len(rows) > limit else b"false") + b',"next_cursor":'
                + orjson.dumps(_cursor(endpoint_id, last)) + b"}")
        return web.Response(body=body, content_type="application/json")

    async def token(self, request: web.Request) -> web.Response:
        endpoint_id = request.match_info["endpoint_id"]
        row = (await feed_sql.fetch_endpoint(self._pool, endpoint_id)
               if is_valid_id(endpoint_id, "ep") else None)
        if row is None or row["deleted_at"] is not None:
            raise NotFound(f"no endpoint {endpoint_id!r}")
        [key] = active_secrets(row["secret"], None, None, utcnow())
        return web.Response(body=orjson.dumps({"token": feed_token_for_key(endpoint_id, key)}),
                            content_type="application/json")


def setup_feed(app: web.Application, ctx: IngestContext) -> None:
    """Add the feed routes. ``FEED_PREFIX`` must be exempt from the API-key middleware (the
    feed authenticates its own callers)."""
    handlers = FeedHandlers(ctx)
    app.router.add_get(FEED_PREFIX + "{endpoint_id}", handlers.feed)
    app.router.add_get("/v1/endpoints/{endpoint_id}/feed-token", handlers.token)
