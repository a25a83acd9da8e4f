"""The Events half of the ingest API (docs/api.md, "Events"). All routes need the ingest API key.

Routes::

    POST /v1/events                      202 {"id","account_id","type","ordering_key",
                                              "created_at","delivery_count"} after commit
    POST /v1/events/batch                202 {"data": [item, ...]} in request order
    GET  /v1/events/{id}                 event + "data" + "deliveries"
    GET  /v1/events?account_id=&type=&since=&until=&limit=&cursor=   newest first
    GET  /v1/deliveries/{id}/attempts?limit=&cursor=                  by attempt number

Choices the contract leaves open:

- Batch items: each item is either the same object a single POST answers (its bytes too) or
  ``{"error": {"type", "message", "param"}}`` with ``param`` naming the field as
  ``events[i].field``. Invalid items do not stop valid ones; the valid items of one request
  commit together in one transaction (a database failure answers the whole request 503). A
  replayed item is not marked (there is no per-item header). The ``Idempotency-Key`` header is
  refused on the batch route: use each item's ``idempotency_key``. The batch body is limited
  to :func:`batch_body_limit` (500 events of the largest size), and each item's ``data``
  (its bytes as sent) to ``POSTWIRE_MAX_PAYLOAD_BYTES`` (413 for that item).
- ``data`` is stored, delivered and shown exactly as the producer sent it
  (:mod:`services.ingest.event_validation` has the rules and refusals).
- ``GET /v1/events``: every filter is optional; ``since`` is inclusive and ``until`` exclusive,
  both on ``created_at``. Cursors are keyset positions (the last id, or attempt number).
- A malformed id is a 404, like an unknown one.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import orjson
from aiohttp import web

from services.ingest import events_repo as repo
from services.ingest.context import IngestContext
from services.ingest.endpoint_cache import ENDPOINT_CACHE
from services.ingest.event_validation import (
    ACCOUNT_ID_RE,
    TYPE_RE,
    EventInput,
    batch_body_limit,
    parse_batch,
    parse_event,
)
from services.ingest.group_commit import EventWriter, GroupCommitter
from services.ingest.idempotency import Accepted, IdempotencyPurger, Outcome
from services.ingest.key_scope import account_error, require_account
from shared.core.cursor import decode_cursor, encode_cursor
from shared.core.errors import ApiError, InvalidRequest, NotFound
from shared.core.event_body import data_fragment
from shared.core.event_fingerprint import check_idempotency_key
from shared.core.ids import is_valid_id
from shared.core.paging import page_of
from shared.core.timefmt import format_ts
from shared.http.body import check_json_content_type, read_body_bytes
from shared.http.query import check_query, query_limit, query_str, query_ts
from shared.http.responses import json_response
from shared.retention import horizon

COMMITTER: web.AppKey[GroupCommitter[EventInput, Outcome]] = web.AppKey(
    "events_committer", GroupCommitter)
REPLAYED_HEADER = "Idempotent-Replayed"


def _accepted(body: bytes, replayed: bool = False) -> web.Response:
    response = web.Response(status=202, body=body, content_type="application/json")
    if replayed:
        response.headers[REPLAYED_HEADER] = "true"
    return response


def render_event(row: asyncpg.Record) -> dict[str, Any]:
    """The public event object, with ``data`` the exact bytes of the stored webhook body's
    ``data`` (never parsed: what the merchant receives, and no stored document can make a
    read fail)."""
    return {
        "id": row["id"], "account_id": row["account_id"], "type": row["type"],
        "ordering_key": row["ordering_key"], "created_at": format_ts(row["created_at"]),
        "delivery_count": row["delivery_count"], "data": data_fragment(bytes(row["body"])),
    }


def render_delivery(row: asyncpg.Record) -> dict[str, Any]:
    """A delivery as ``GET /v1/events/{id}`` lists it."""
    return {
        "id": row["id"], "endpoint_id": row["endpoint_id"], "status": row["status"],
        "attempt_count": row["attempt_count"],
        "last_attempt_at": format_ts(row["last_attempt_at"]),
        "next_attempt_at": format_ts(row["next_attempt_at"]),
        "last_status_code": row["last_status_code"],
    }


def render_attempt(row: asyncpg.Record) -> dict[str, Any]:
    """One attempt as ``GET /v1/deliveries/{id}/attempts`` lists it."""
    return {
        "id": row["id"], "attempt": row["attempt"], "started_at": format_ts(row["started_at"]),
        "duration_ms": row["duration_ms"], "status_code": row["status_code"],
        "error": row["error"], "response_excerpt": row["response_excerpt"],
    }


def scoped_item(request: web.Request, index: int,
                item: EventInput | ApiError) -> EventInput | ApiError:
    """A batch item, or its 403 when the request's key may not act for its account."""
    if isinstance(item, ApiError):
        return item
    return account_error(request, item.account_id, f"events[{index}].account_id") or item


class _Handlers:
    def __init__(self, ctx: IngestContext, committer: GroupCommitter[EventInput, Outcome]):
        self._pool = ctx.pool
        self._max_payload = ctx.settings.common.max_payload_bytes
        self._batch_limit = batch_body_limit(self._max_payload)
        self._committer = committer

    async def post_event(self, request: web.Request) -> web.Response:
        check_json_content_type(request)
        key = request.headers.get("Idempotency-Key")
        if key is not None:
            key = check_idempotency_key(key, "Idempotency-Key")
        event = parse_event(await read_body_bytes(request, self._max_payload),
                            max_data_bytes=self._max_payload, idempotency_key=key)
        require_account(request, event.account_id)
        [outcome] = await self._committer.submit([event], source=request.transport)
        if isinstance(outcome, ApiError):
            raise outcome
        return _accepted(outcome.body, outcome.replayed)

    async def post_batch(self, request: web.Request) -> web.Response:
        check_json_content_type(request)
        if "Idempotency-Key" in request.headers:
            raise InvalidRequest("the batch route takes no Idempotency-Key header; give each "
                                 "event its own idempotency_key", param="Idempotency-Key")
        items = parse_batch(await read_body_bytes(request, self._batch_limit), self._max_payload)
        items = [scoped_item(request, n, item) for n, item in enumerate(items)]
        outcomes = iter(await self._committer.submit(
            [i for i in items if isinstance(i, EventInput)], source=request.transport))
        parts: list[bytes] = []
        for item in items:
            result = item if isinstance(item, ApiError) else next(outcomes)
            parts.append(result.body if isinstance(result, Accepted)
                         else orjson.dumps(result.body()))
        return _accepted(b'{"data":[' + b",".join(parts) + b"]}")

    async def get_event(self, request: web.Request) -> web.Response:
        event_id = request.match_info["event_id"]
        if not is_valid_id(event_id, "evt"):
            raise NotFound(f"no event {event_id!r}")
        async with self._pool.acquire() as conn:
            row = await repo.fetch_event(conn, event_id)
            if row is None:
                raise await horizon.not_found(conn, "event", event_id, f"no event {event_id!r}")
            deliveries = await repo.fetch_event_deliveries(conn, event_id)
        return json_response({**render_event(row),
                              "deliveries": [render_delivery(d) for d in deliveries]})

    async def list_events(self, request: web.Request) -> web.Response:
        check_query(request, ("account_id", "type", "since", "until", "limit", "cursor"))
        account_id = request.query.get("account_id")
        if account_id is not None and not ACCOUNT_ID_RE.fullmatch(account_id):
            raise InvalidRequest("account_id must be 1..64 of [A-Za-z0-9_-]", param="account_id")
        event_type = query_str(request, "type", 128)
        if event_type is not None and not TYPE_RE.fullmatch(event_type):
            raise InvalidRequest("type must be 1..128 of [A-Za-z0-9_.-]", param="type")
        limit = query_limit(request)
        cursor = query_str(request, "cursor", 1024)
        before = str(decode_cursor("events", cursor, (str,))[0]) if cursor is not None else None
        where = repo.EventFilter(account_id, event_type, query_ts(request, "since"),
                                 query_ts(request, "until"), before)
        rows = await repo.list_events(self._pool, where, limit + 1)
        page = page_of(rows, limit, render_event,
                       lambda last: encode_cursor("events", [last["id"]]))
        return json_response(page.to_json())

    async def list_attempts(self, request: web.Request) -> web.Response:
        check_query(request, ("limit", "cursor"))
        delivery_id = request.match_info["delivery_id"]
        if not is_valid_id(delivery_id, "dlv"):
            raise NotFound(f"no delivery {delivery_id!r}")
        limit = query_limit(request)
        after = 0
        cursor = query_str(request, "cursor", 1024)
        if cursor is not None:
            key = decode_cursor("attempts", cursor, (str, int))
            if key[0] != delivery_id:
                raise InvalidRequest("cursor belongs to another list", param="cursor")
            after = int(key[1])
        async with self._pool.acquire() as conn:
            if not await repo.delivery_exists(conn, delivery_id):
                raise await horizon.not_found(conn, "delivery", delivery_id,
                                              f"no delivery {delivery_id!r}")
            rows = await repo.list_attempts(conn, delivery_id, after, limit + 1)
        page = page_of(rows, limit, render_attempt,
                       lambda last: encode_cursor("attempts", [delivery_id, last["attempt"]]))
        return json_response(page.to_json())


def _commit_concurrency(pool_size: int) -> int:
    """Concurrent group-commit transactions: 2 (1 with a tiny pool); the rest of the pool
    serves reads, the endpoint cache and the outbox. Measured on 2 cores: 2 beats 1, 3, 4
    and 6; more commits in flight only mean smaller batches competing for the same CPU."""
    return 2 if pool_size >= 4 else 1


def setup_events(app: web.Application, ctx: IngestContext) -> None:
    """Add the event routes and the group committer (``app[COMMITTER]``).

    Needs ``app[ENDPOINT_CACHE]`` (``setup_endpoints`` runs first). The committer starts with
    the app; on cleanup it stops accepting (503), commits what is queued and waits for every
    commit, before the pool closes (cleanup contexts unwind in reverse order).
    """
    settings = ctx.settings
    writer = EventWriter(ctx, app[ENDPOINT_CACHE])
    committer: GroupCommitter[EventInput, Outcome] = GroupCommitter(
        writer.commit, max_items=settings.batch_max_events,
        max_wait_s=settings.batch_max_wait_ms / 1000,
        max_in_flight=_commit_concurrency(settings.common.db_pool_size))
    purger = IdempotencyPurger(ctx.pool)
    app[COMMITTER] = committer

    async def lifetime(_: web.Application) -> AsyncIterator[None]:
        committer.start()
        purger.start()
        yield
        await committer.stop()
        await writer.close()
        await purger.stop()

    app.cleanup_ctx.append(lifetime)
    handlers = _Handlers(ctx, committer)
    app.router.add_post("/v1/events", handlers.post_event)
    app.router.add_post("/v1/events/batch", handlers.post_batch)
    app.router.add_get("/v1/events", handlers.list_events)
    app.router.add_get("/v1/events/{event_id}", handlers.get_event)
    app.router.add_get("/v1/deliveries/{delivery_id}/attempts", handlers.list_attempts)
