"""Producer reconciliation: ``POST /v1/reconcile`` (ingest API key).

Request: the ids the producer believes it sent, streamed as the body, ``Content-Type``
``application/x-ndjson`` (also ``application/jsonl``) or ``text/csv`` (line formats and the
normalisation rule: :mod:`shared.core.reconcile`). Query: ``account_id`` (required),
``id_type`` (``idempotency_key``, the default, or ``event_id``), ``from`` (inclusive) and
``to`` (exclusive) on the events' ``created_at`` (both optional).

Answer: ``200``, ``application/x-ndjson``, streamed, one JSON object per line::

    {"kind": "missing", "id"}                               ids never accepted, by id
    {"kind": "open", "id", "event_id", "endpoint_id", "delivery_id", "status",
     "attempt_count", "last_attempt_at", "next_attempt_at", "last_status_code", "last_error"}
                                                            pending/retrying, by endpoint
    {"kind": "failed", ... as open ..., "reason", "dead_at"}  dead or cancelled, by endpoint
    {"kind": "summary", ...counts...}                       always the last line

A stream without its ``summary`` line is incomplete (the connection broke, or a line
``{"kind": "error", "error": {...}}`` says why). Errors found before the answer starts (bad
parameters, a malformed line, too many ids) are ordinary contract errors: 400, 413, 415.

Memory is bounded on this side: the body is read a chunk at a time and copied into Postgres
in COPY chunks of :data:`COPY_CHUNK_BYTES`; the comparison is SQL over temporary tables; the
answer is read through server-side cursors and written as it comes. At most
``POSTWIRE_RECONCILE_CONCURRENCY`` reconciliations run at once per process (429 beyond). The
upload's body deadline is ``POSTWIRE_RECONCILE_UPLOAD_TIMEOUT_S`` (3600 s) instead of the HTTP
layer's ``POSTWIRE_HTTP_BODY_TIMEOUT_S``: millions of ids take longer than one event.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import asyncpg
import orjson
from aiohttp import web
from aiohttp.web_protocol import RequestPayloadError

from services.ingest import reconcile_sql as sql
from services.ingest.context import IngestContext
from services.ingest.event_validation import ACCOUNT_ID_RE
from shared.core.errors import (
    InvalidRequest,
    PayloadTooLarge,
    RateLimited,
    UnsupportedMediaType,
)
from shared.core.reconcile import (
    ID_TYPES,
    IdParser,
    IdType,
    LineSplitter,
    UploadFormat,
    copy_text_field,
    normalise_id,
)
from shared.core.timefmt import format_ts
from shared.http.limits import BODY_DEADLINE
from shared.http.query import check_query, query_ts
from shared.logging import fields

log = logging.getLogger(__name__)

COPY_CHUNK_BYTES = 4 * 1024 * 1024
WRITE_CHUNK_BYTES = 256 * 1024
_FORMATS: dict[str, UploadFormat] = {
    "application/x-ndjson": "ndjson", "application/jsonl": "ndjson",
    "application/json-lines": "ndjson", "text/csv": "csv",
}
NDJSON = "application/x-ndjson"


def _upload_format(request: web.Request) -> UploadFormat:
    found = _FORMATS.get(request.content_type)
    if found is None:
        raise UnsupportedMediaType(
            "Content-Type must be application/x-ndjson (one id per line) or text/csv",
            param="Content-Type")
    return found


def _id_type(request: web.Request) -> IdType:
    raw = request.query.get("id_type", "idempotency_key")
    for candidate in ID_TYPES:
        if raw == candidate:
            return candidate
    raise InvalidRequest("id_type must be idempotency_key or event_id", param="id_type")


def _account(request: web.Request) -> str:
    account_id = request.query.get("account_id")
    if account_id is None or not ACCOUNT_ID_RE.fullmatch(account_id):
        raise InvalidRequest("account_id is required: 1..64 of [A-Za-z0-9_-]",
                             param="account_id")
    return account_id


async def _body_chunks(request: web.Request) -> AsyncIterator[bytes]:
    while True:
        try:
            chunk = await request.content.readany()
        except RequestPayloadError as exc:
            raise InvalidRequest("the request body is malformed (broken chunked encoding or "
                                 "a body shorter than its Content-Length)") from exc
        except TimeoutError as exc:  # the HTTP layer's body deadline
            raise InvalidRequest("the upload did not arrive in time (POSTWIRE_RECONCILE_"
                                 "UPLOAD_TIMEOUT_S); split it into smaller windows",
                                 param="body") from exc
        if not chunk:
            return
        yield chunk


async def upload(request: web.Request, conn: asyncpg.Connection, upload_format: UploadFormat,
                 id_type: IdType, max_ids: int) -> int:
    """Stream the body into ``reconcile_upload``; returns how many ids it held."""
    splitter = LineSplitter()
    parser = IdParser(upload_format)
    parts: list[str] = []
    size = count = 0

    async def flush() -> None:
        nonlocal parts, size
        if parts:
            await sql.copy_ids(conn, "".join(parts).encode())
        parts, size = [], 0

    async for chunk in _body_chunks(request):
        for raw in parser.ids(splitter.feed(chunk)):
            value = normalise_id(raw, id_type)
            if not value:
                continue
            line = copy_text_field(value) + "\n"
            parts.append(line)
            size += len(line)
            count += 1
        if count > max_ids:
            raise PayloadTooLarge(f"the upload holds more than {max_ids} ids; split it "
                                  "into smaller windows")
        if size >= COPY_CHUNK_BYTES:
            await flush()
    for raw in parser.ids(splitter.finish()):
        value = normalise_id(raw, id_type)
        if value:
            parts.append(copy_text_field(value) + "\n")
            count += 1
    if count > max_ids:
        raise PayloadTooLarge(f"the upload holds more than {max_ids} ids")
    await flush()
    return count


def _ts(value: datetime | None) -> str | None:
    return format_ts(value)


def render_issue(kind: str, row: asyncpg.Record) -> dict[str, Any]:
    """One ``open`` or ``failed`` line."""
    item: dict[str, Any] = {
        "kind": kind, "id": row["id"], "event_id": row["event_id"],
        "endpoint_id": row["endpoint_id"], "delivery_id": row["delivery_id"],
        "status": row["status"], "attempt_count": row["attempt_count"],
        "last_attempt_at": _ts(row["last_attempt_at"]), "last_status_code": row["last_status_code"],
        "last_error": row["last_error"],
    }
    if kind == "open":
        item["next_attempt_at"] = _ts(row["next_attempt_at"])
    else:
        item["reason"] = row["reason"]
        item["dead_at"] = _ts(row["dead_at"])
    return item


def render_summary(summary: sql.Summary, params: dict[str, Any]) -> dict[str, Any]:
    """The final ``summary`` line."""
    return {
        "kind": "summary", **params,
        "ids_received": summary.ids_received, "ids_missing": summary.ids_missing,
        "events_accepted": summary.events_accepted,
        "events_fully_delivered": summary.events_fully_delivered,
        "events_open": summary.events_open, "events_failed": summary.events_failed,
        "events_without_deliveries": summary.events_without_deliveries,
        "deliveries": {"total": summary.deliveries, "succeeded": summary.deliveries_succeeded,
                       "open": summary.deliveries_open, "dead": summary.deliveries_dead,
                       "cancelled": summary.deliveries_cancelled},
        "open_by_endpoint": summary.open_by_endpoint,
    }


class _Writer:
    """Buffers answer lines and writes them in chunks of about :data:`WRITE_CHUNK_BYTES`."""

    def __init__(self, response: web.StreamResponse) -> None:
        self._response = response
        self._parts: list[bytes] = []
        self._size = 0

    async def line(self, item: dict[str, Any]) -> None:
        data = orjson.dumps(item) + b"\n"
        self._parts.append(data)
        self._size += len(data)
        if self._size >= WRITE_CHUNK_BYTES:
            await self.flush()

    async def flush(self) -> None:
        if self._parts:
            await self._response.write(b"".join(self._parts))
        self._parts, self._size = [], 0


async def answer(request: web.Request, conn: asyncpg.Connection, matched: sql.Matched,
                 received: int, params: dict[str, Any]) -> web.StreamResponse:
    """Stream the answer lines from one read-only snapshot; the summary comes last."""
    response = web.StreamResponse(status=200, headers={"Content-Type": NDJSON})
    await response.prepare(request)
    out = _Writer(response)
    try:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            summary = await sql.summarise(conn, matched, received)
            async for row in sql.stream(conn, sql.MISSING_SQL):
                await out.line({"kind": "missing", "id": row["id"]})
            async for row in sql.stream(conn, sql.OPEN_SQL):
                await out.line(render_issue("open", row))
            async for row in sql.stream(conn, sql.FAILED_SQL):
                await out.line(render_issue("failed", row))
        await out.line(render_summary(summary, params))
    except ConnectionResetError:
        log.info("the client left before the reconciliation's answer ended")
        return response
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        log.warning("reconciliation failed while answering: %r", exc)
        await out.line({"kind": "error", "error": {
            "type": "unavailable", "message": "the reconciliation failed midway; retry",
            "param": None}})
    try:
        await out.flush()
        await response.write_eof()
    except ConnectionResetError:
        log.info("the client left before the reconciliation's answer ended")
    return response


class ReconcileHandler:
    """``POST /v1/reconcile``; one dedicated Postgres connection per request."""

    def __init__(self, ctx: IngestContext) -> None:
        self._dsn = ctx.settings.common.database_url
        self._max_ids = ctx.settings.reconcile_max_ids
        self._slots = asyncio.Semaphore(ctx.settings.reconcile_concurrency)
        self._upload_timeout_s = ctx.settings.reconcile_upload_timeout_s

    async def post(self, request: web.Request) -> web.StreamResponse:
        check_query(request, ("account_id", "id_type", "from", "to"))
        account_id, id_type = _account(request), _id_type(request)
        since, until = query_ts(request, "from"), query_ts(request, "to")
        if since is not None and until is not None and since >= until:
            raise InvalidRequest("from must be earlier than to", param="from")
        upload_format = _upload_format(request)
        if self._slots.locked():
            raise RateLimited("too many reconciliations are running; retry in a minute")
        async with self._slots:
            deadline = request.get(BODY_DEADLINE)
            if deadline is not None:  # ids stream for as long as they take to match
                deadline.arm(self._upload_timeout_s)
            started = time.monotonic()
            conn = await sql.open_session(self._dsn)
            try:
                received = await upload(request, conn, upload_format, id_type, self._max_ids)
                uploaded = time.monotonic()
                found = await sql.match(conn, id_type, account_id, since, until)
                matched = time.monotonic()
                params = {"account_id": account_id, "id_type": id_type,
                          "from": _ts(since), "to": _ts(until)}
                response = await answer(request, conn, found, received, params)
            finally:
                await conn.close()
            done = time.monotonic()
            log.info("reconciliation answered", extra=fields(
                account_id=account_id, id_type=id_type, ids=received,
                upload_s=round(uploaded - started, 3), match_s=round(matched - uploaded, 3),
                answer_s=round(done - matched, 3), seconds=round(done - started, 3)))
            return response


def setup_reconcile(app: web.Application, ctx: IngestContext) -> None:
    """Add ``POST /v1/reconcile``."""
    handler = ReconcileHandler(ctx)
    app.router.add_post("/v1/reconcile", handler.post)
