"""The events resource: ``GET /admin/v1/events/{event_id}`` (the event, its deliveries and
their attempts) and ``POST /admin/v1/events/{event_id}/replay``.

A replay runs in one transaction with its audit row (see :mod:`audit`); outbox messages are
handed to the flusher only after commit.
"""

from __future__ import annotations

import orjson
from aiohttp import web

from services.dlq_replay.actions import run_event_replay
from services.dlq_replay.context import CTX
from services.dlq_replay.idempotency import IdempotencyInput
from services.dlq_replay.params import MAX_BODY_BYTES, path_id
from services.dlq_replay.reads import event_view
from services.dlq_replay.schemas import parse_event_replay, parse_idempotency_key, request_hash
from shared.core.event_body import embed_json_text
from shared.http.auth import principal_of
from shared.http.body import read_json_object
from shared.http.query import check_query
from shared.http.responses import json_response


async def get_event(request: web.Request) -> web.Response:
    """``GET /admin/v1/events/{event_id}``: the event, deliveries and their attempts."""
    check_query(request, ())
    event_id = path_id(request, "event_id", "evt", "event")
    view = await event_view(request.app[CTX].pool, event_id)
    return web.Response(body=orjson.dumps(view, default=embed_json_text),
                        content_type="application/json")


async def post_event_replay(request: web.Request) -> web.Response:
    """``POST /admin/v1/events/{event_id}/replay`` -> 202 with one outcome per delivery."""
    check_query(request, ())
    ctx = request.app[CTX]
    event_id = path_id(request, "event_id", "evt", "event")
    operator = principal_of(request)
    key = parse_idempotency_key(request.headers.get("Idempotency-Key"))
    body = await read_json_object(request, MAX_BODY_BYTES)
    parsed = parse_event_replay(body)
    idem = None if key is None else IdempotencyInput(
        key, request_hash(event_id, body), ctx.settings.idempotency_window_s)
    result = await run_event_replay(ctx, actor=operator, event_id=event_id, request=parsed,
                                    idempotency=idem)
    headers = {"Idempotent-Replayed": "true"} if result.replayed else None
    return json_response(result.body, 202, headers)


def setup_event_routes(app: web.Application) -> None:
    app.router.add_get("/admin/v1/events/{event_id}", get_event)
    app.router.add_post("/admin/v1/events/{event_id}/replay", post_event_replay)
