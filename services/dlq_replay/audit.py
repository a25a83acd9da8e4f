"""The operator audit log: one row per mutating admin call, in that call's own transaction.

Actions: ``replay.event`` (target ``evt_...``), ``replay.bulk.start`` and ``replay.bulk.cancel``
(target ``rpl_...``). Rows are never updated or deleted by the service.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import asyncpg

from shared.adapters.pg.where import Where
from shared.core.cursor import decode_cursor, encode_cursor
from shared.core.paging import Page, page_of
from shared.core.timefmt import format_ts

ACTION_EVENT_REPLAY = "replay.event"
ACTION_BULK_START = "replay.bulk.start"
ACTION_BULK_CANCEL = "replay.bulk.cancel"
_CURSOR_KIND = "audit"


async def write_audit(conn: asyncpg.Connection, *, operator: str, action: str, target: str,
                      reason: str | None, details: Mapping[str, Any]) -> int:
    """Append an audit row inside the caller's transaction; returns its id."""
    value = await conn.fetchval(
        "INSERT INTO audit_log (operator, action, target, reason, details)"
        " VALUES ($1, $2, $3, $4, $5) RETURNING id",
        operator, action, target, reason, dict(details),
    )
    return int(value)


def audit_json(row: Mapping[str, Any]) -> dict[str, Any]:
    """An audit row as the API shows it."""
    return {"id": row["id"], "at": format_ts(row["at"]), "operator": row["operator"],
            "action": row["action"], "target": row["target"], "reason": row["reason"],
            "details": row["details"]}


async def list_audit(pool: asyncpg.Pool, *, limit: int, cursor: str | None,
                     filters: Mapping[str, str | None]) -> Page:
    """Newest first, keyset on ``id`` (exactly once while rows are added).

    ``filters`` may hold ``operator``, ``action`` and ``target`` (exact matches).
    """
    where = Where()
    for column in ("operator", "action", "target"):
        where.eq(column, filters.get(column))
    if cursor is not None:
        key = decode_cursor(_CURSOR_KIND, cursor, (int,))
        where.add("id < {}", key[0])
    rows = await pool.fetch(
        f"SELECT id, at, operator, action, target, reason, details FROM audit_log"
        f" {where.sql()} ORDER BY id DESC LIMIT {limit + 1}",
        *where.args,
    )
    return page_of(rows, limit, audit_json, lambda last: encode_cursor(_CURSOR_KIND, [last["id"]]))
