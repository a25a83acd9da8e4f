"""The dead letters resource: ``GET /admin/v1/dead-letters``."""

from __future__ import annotations

from aiohttp import web

from services.dlq_replay.context import CTX
from services.dlq_replay.params import ACCOUNT_RE, PAGING, TYPE_RE, query_id, query_match
from services.dlq_replay.reads import DeadLetterQuery, list_dead_letters
from shared.http.query import check_query, query_limit, query_str, query_ts


async def get_dead_letters(request: web.Request) -> web.Response:
    """``GET /admin/v1/dead-letters``: newest first, cursor pagination; a malformed filter
    (account id, type or id not in its documented form) is a 400 naming it."""
    check_query(request, ("endpoint_id", "account_id", "type", "event_id", "since", "until",
                          *PAGING))
    query = DeadLetterQuery(
        endpoint_id=query_id(request, "endpoint_id", "ep", "an endpoint id"),
        account_id=query_match(request, "account_id", ACCOUNT_RE, "1..64 of [A-Za-z0-9_-]"),
        type=query_match(request, "type", TYPE_RE, "1..128 of [A-Za-z0-9_.-]"),
        event_id=query_id(request, "event_id", "evt", "an event id"),
        since=query_ts(request, "since"), until=query_ts(request, "until"))
    page = await list_dead_letters(request.app[CTX].pool, query, limit=query_limit(request),
                                   cursor=query_str(request, "cursor", 512))
    return web.json_response(page.to_json())


def setup_dead_letter_routes(app: web.Application) -> None:
    app.router.add_get("/admin/v1/dead-letters", get_dead_letters)
