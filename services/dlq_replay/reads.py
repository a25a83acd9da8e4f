"""Read-only operator views: the dead-letter list and one event with deliveries and attempts."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from shared.adapters.pg.where import Where
from shared.core.cursor import decode_cursor, encode_cursor
from shared.core.event_body import JsonText, stored_data_text
from shared.core.paging import Page, page_of
from shared.core.retention import delivery_id_window
from shared.core.timefmt import format_ts
from shared.retention import horizon

_DL_CURSOR = "dead_letters"


@dataclass(frozen=True)
class DeadLetterQuery:
    """Filters of ``GET /admin/v1/dead-letters``; ``since`` inclusive, ``until`` exclusive."""

    endpoint_id: str | None = None
    account_id: str | None = None
    type: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    event_id: str | None = None


def dead_letter_json(row: Mapping[str, Any]) -> dict[str, Any]:
    """A dead letter as the API shows it; ``delivery_status`` is where the delivery is now."""
    return {
        "delivery_id": row["delivery_id"], "event_id": row["event_id"],
        "endpoint_id": row["endpoint_id"], "account_id": row["account_id"],
        "type": row["type"], "reason": row["reason"], "attempt_count": row["attempt_count"],
        "last_status_code": row["last_status_code"], "last_error": row["last_error"],
        "dead_at": format_ts(row["dead_at"]), "replay_count": row["replay_count"],
        "delivery_status": row["delivery_status"],
    }


async def list_dead_letters(pool: asyncpg.Pool, query: DeadLetterQuery, *, limit: int,
                            cursor: str | None) -> Page:
    """Newest first by ``seq``; keyset pagination returns each row exactly once while new
    dead letters arrive (they get higher ``seq`` values, above every cursor)."""
    where = Where()
    where.eq("dl.endpoint_id", query.endpoint_id)
    where.eq("dl.account_id", query.account_id)
    where.eq("dl.type", query.type)
    where.eq("dl.event_id", query.event_id)
    if query.since is not None:
        where.add("dl.dead_at >= {}", query.since)
    if query.until is not None:
        where.add("dl.dead_at < {}", query.until)
    if cursor is not None:
        key = decode_cursor(_DL_CURSOR, cursor, (int,))
        where.add("dl.seq < {}", key[0])
    rows = await pool.fetch(
        "SELECT dl.*, d.status AS delivery_status FROM dead_letters dl"
        f" LEFT JOIN deliveries d ON d.id = dl.delivery_id {where.sql()}"
        f" ORDER BY dl.seq DESC LIMIT {limit + 1}",
        *where.args,
    )
    return page_of(rows, limit, dead_letter_json,
                   lambda last: encode_cursor(_DL_CURSOR, [last["seq"]]))


def attempt_json(row: Mapping[str, Any]) -> dict[str, Any]:
    """One attempt as the API shows it (the same shape as the ingest API's attempt list)."""
    return {"id": row["id"], "attempt": row["attempt"], "started_at": format_ts(row["started_at"]),
            "duration_ms": row["duration_ms"], "status_code": row["status_code"],
            "error": row["error"], "response_excerpt": row["response_excerpt"]}


def delivery_json(row: Mapping[str, Any], attempts: list[dict[str, Any]]) -> dict[str, Any]:
    """One delivery of the operator's event view, with its dead letter (if any) and attempts."""
    dead_letter = None
    if row["dead_at"] is not None:
        dead_letter = {"reason": row["dead_reason"], "dead_at": format_ts(row["dead_at"]),
                       "replay_count": row["replay_count"]}
    return {
        "id": row["id"], "endpoint_id": row["endpoint_id"], "status": row["status"],
        "attempt_count": row["attempt_count"], "generation": row["generation"],
        "last_attempt_at": format_ts(row["last_attempt_at"]),
        "next_attempt_at": format_ts(row["next_attempt_at"]),
        "last_status_code": row["last_status_code"], "last_error": row["last_error"],
        "dead_letter": dead_letter, "attempts": attempts,
    }


def _event_data(body: bytes) -> JsonText | None:
    """``data`` exactly as stored (never parsed: exact, and no stored document can make this
    read fail); render the view with ``orjson.dumps(view, default=embed_json_text)``."""
    return stored_data_text(body)


async def event_view(pool: asyncpg.Pool, event_id: str) -> dict[str, Any]:
    """The event, its deliveries (id order) and each delivery's attempts; NotFound if unknown."""
    async with pool.acquire() as conn, conn.transaction(readonly=True, isolation="repeatable_read"):
        event = await conn.fetchrow("SELECT * FROM events WHERE id = $1", event_id)
        window = delivery_id_window(event_id)
        if event is None or window is None:
            raise await horizon.not_found(conn, "event", event_id, f"no event {event_id}",
                                          param="event_id")
        deliveries = await conn.fetch(
            "SELECT d.*, dl.reason AS dead_reason, dl.dead_at, dl.replay_count"
            " FROM deliveries d LEFT JOIN dead_letters dl ON dl.delivery_id = d.id"
            " WHERE d.event_id = $1 AND d.id >= $2 AND d.id < $3 ORDER BY d.id",
            event_id, *window)
        attempts = await conn.fetch(
            "SELECT * FROM attempts WHERE delivery_id = ANY($1::text[])"
            " ORDER BY delivery_id, attempt", [d["id"] for d in deliveries])
    by_delivery: dict[str, list[dict[str, Any]]] = {}
    for a in attempts:
        by_delivery.setdefault(a["delivery_id"], []).append(attempt_json(a))
    return {
        "id": event["id"], "account_id": event["account_id"], "type": event["type"],
        "ordering_key": event["ordering_key"], "created_at": format_ts(event["created_at"]),
        "delivery_count": event["delivery_count"], "data": _event_data(bytes(event["body"])),
        "deliveries": [delivery_json(d, by_delivery.get(d["id"], [])) for d in deliveries],
    }
