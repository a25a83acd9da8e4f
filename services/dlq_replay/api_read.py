"""Read-only admin routes: dead letters, one event, one replay, the audit log."""

from __future__ import annotations

import re

import orjson
from aiohttp import web

from services.dlq_replay.audit import list_audit
from services.dlq_replay.context import CTX
from services.dlq_replay.jobs import get_job
from services.dlq_replay.reads import DeadLetterQuery, event_view, list_dead_letters
from shared.core.errors import InvalidRequest, NotFound
from shared.core.event_body import embed_json_text
from shared.core.ids import is_valid_id
from shared.http.query import check_query, query_limit, query_str, query_ts

ACCOUNT_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
TYPE_RE = re.compile(r"[A-Za-z0-9_.-]{1,128}")

PAGING = ("limit", "cursor")


def path_id(request: web.Request, name: str, prefix: str, noun: str) -> str:
    """The ``{name}`` path segment; a malformed id is a 404 like an unknown one."""
    value = request.match_info[name]
    if not is_valid_id(value, prefix):
        raise NotFound(f"no {noun} {value}", param=name)
    return value


def _query_match(request: web.Request, name: str, pattern: re.Pattern[str],
                 what: str) -> str | None:
    """An optional filter that must match ``pattern`` in full (400 naming it otherwise)."""
    value = request.query.get(name)
    if value is not None and not pattern.fullmatch(value):
        raise InvalidRequest(f"{name} must be {what}", param=name)
    return value


def _query_id(request: web.Request, name: str, prefix: str, what: str) -> str | None:
    """An optional id filter; a malformed id is a 400 naming it."""
    value = request.query.get(name)
    if value is not None and not is_valid_id(value, prefix):
        raise InvalidRequest(f"{name} must be {what}", param=name)
    return value


async def get_dead_letters(request: web.Request) -> web.Response:
    """``GET /admin/v1/dead-letters``: newest first, cursor pagination; a malformed filter
    (account id, type or id not in its documented form) is a 400 naming it."""
    check_query(request, ("endpoint_id", "account_id", "type", "event_id", "since", "until",
                          *PAGING))
    query = DeadLetterQuery(
        endpoint_id=_query_id(request, "endpoint_id", "ep", "an endpoint id"),
        account_id=_query_match(request, "account_id", ACCOUNT_RE, "1..64 of [A-Za-z0-9_-]"),
        type=_query_match(request, "type", TYPE_RE, "1..128 of [A-Za-z0-9_.-]"),
        event_id=_query_id(request, "event_id", "evt", "an event id"),
        since=query_ts(request, "since"), until=query_ts(request, "until"))
    page = await list_dead_letters(request.app[CTX].pool, query, limit=query_limit(request),
                                   cursor=query_str(request, "cursor", 512))
    return web.json_response(page.to_json())


async def get_event(request: web.Request) -> web.Response:
    """``GET /admin/v1/events/{event_id}``: the event, deliveries and their attempts."""
    check_query(request, ())
    event_id = path_id(request, "event_id", "evt", "event")
    view = await event_view(request.app[CTX].pool, event_id)
    return web.Response(body=orjson.dumps(view, default=embed_json_text),
                        content_type="application/json")


async def get_replay(request: web.Request) -> web.Response:
    """``GET /admin/v1/replays/{id}``: a bulk or single-event replay and its progress."""
    check_query(request, ())
    job_id = path_id(request, "id", "rpl", "replay")
    return web.json_response(await get_job(request.app[CTX].pool, job_id))


async def get_audit_log(request: web.Request) -> web.Response:
    """``GET /admin/v1/audit-log``: newest first; optional exact filters."""
    check_query(request, ("operator", "action", "target", *PAGING))
    filters = {name: query_str(request, name, 128) for name in ("operator", "action", "target")}
    page = await list_audit(request.app[CTX].pool, limit=query_limit(request),
                            cursor=query_str(request, "cursor", 512), filters=filters)
    return web.json_response(page.to_json())


def setup_read_routes(app: web.Application) -> None:
    app.router.add_get("/admin/v1/dead-letters", get_dead_letters)
    app.router.add_get("/admin/v1/events/{event_id}", get_event)
    app.router.add_get("/admin/v1/replays/{id}", get_replay)
    app.router.add_get("/admin/v1/audit-log", get_audit_log)
