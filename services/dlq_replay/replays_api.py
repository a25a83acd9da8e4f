"""The replays resource: start a bulk replay (``POST /admin/v1/replays``), read a replay's
progress (``GET /admin/v1/replays/{id}``) and cancel one (``POST /admin/v1/replays/{id}/cancel``).

Starting and cancelling run in one transaction with their audit row (see :mod:`audit`).
"""

from __future__ import annotations

from aiohttp import web

from services.dlq_replay.actions import run_bulk_start, run_cancel
from services.dlq_replay.context import CTX
from services.dlq_replay.idempotency import IdempotencyInput
from services.dlq_replay.jobs import get_job
from services.dlq_replay.params import MAX_BODY_BYTES, path_id
from services.dlq_replay.schemas import (
    parse_bulk_replay,
    parse_cancel,
    parse_idempotency_key,
    request_hash,
)
from shared.http.auth import principal_of
from shared.http.body import (
    check_json_content_type,
    parse_json_object,
    read_body_bytes,
    read_json_object,
)
from shared.http.query import check_query
from shared.http.responses import json_response


async def post_bulk_replay(request: web.Request) -> web.Response:
    """``POST /admin/v1/replays`` -> 202 ``{"id", "status", "matched", ...}``."""
    check_query(request, ())
    ctx = request.app[CTX]
    operator = principal_of(request)
    key = parse_idempotency_key(request.headers.get("Idempotency-Key"))
    body = await read_json_object(request, MAX_BODY_BYTES)
    parsed = parse_bulk_replay(body)
    idem = None if key is None else IdempotencyInput(
        key, request_hash("bulk", body), ctx.settings.idempotency_window_s)
    job, replayed = await run_bulk_start(ctx, actor=operator, request=parsed, idempotency=idem)
    return json_response(job, 202, {"Idempotent-Replayed": "true"} if replayed else None)


async def get_replay(request: web.Request) -> web.Response:
    """``GET /admin/v1/replays/{id}``: a bulk or single-event replay and its progress."""
    check_query(request, ())
    job_id = path_id(request, "id", "rpl", "replay")
    return web.json_response(await get_job(request.app[CTX].pool, job_id))


async def _optional_reason(request: web.Request) -> str | None:
    """The cancel body is optional: nothing, or ``{"reason": "..."}``."""
    raw = await read_body_bytes(request, MAX_BODY_BYTES)
    if not raw.strip():
        return None
    check_json_content_type(request)
    return parse_cancel(parse_json_object(raw))


async def post_cancel(request: web.Request) -> web.Response:
    """``POST /admin/v1/replays/{id}/cancel`` -> 200 with the job (audited when it changed)."""
    check_query(request, ())
    ctx = request.app[CTX]
    job_id = path_id(request, "id", "rpl", "replay")
    operator = principal_of(request)
    reason = await _optional_reason(request)
    job = await run_cancel(ctx, actor=operator, job_id=job_id, reason=reason)
    return json_response(job, 200)


def setup_replay_routes(app: web.Application) -> None:
    app.router.add_post("/admin/v1/replays", post_bulk_replay)
    app.router.add_get("/admin/v1/replays/{id}", get_replay)
    app.router.add_post("/admin/v1/replays/{id}/cancel", post_cancel)
