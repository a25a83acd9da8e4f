"""SQL for the ``endpoints`` table and its change notifications.

Functions take a connection and run inside the caller's transaction where they say so; none of
them commits. Deleted endpoints (``deleted_at`` set) are invisible to every reader here.
Every write that can change where events are routed must be followed, in the same transaction,
by :func:`notify_endpoints_changed`, so that every process's endpoint cache drops the account.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from shared.adapters.pg.notify import ENDPOINTS_CHANNEL as ENDPOINTS_CHANNEL
from shared.adapters.pg.notify import notify_endpoints_changed as notify_endpoints_changed
from shared.core.delivery_status import OPEN_SQL
from shared.endpoints.validation import EndpointSpec

MANUAL_DISABLED_REASON = "manual"

_COLUMNS = ("id, account_id, url, event_types, description, enabled, disabled_reason, "
            "rate_limit_per_s, max_in_flight, metadata, created_at, updated_at")
_UPDATABLE = frozenset({"url", "event_types", "description", "enabled", "rate_limit_per_s",
                        "max_in_flight", "metadata"})


async def insert_endpoint(conn: asyncpg.Connection, endpoint_id: str, spec: EndpointSpec,
                          secret: str, now: datetime) -> asyncpg.Record:
    """Insert a new endpoint; returns its row (public columns)."""
    row: asyncpg.Record = await conn.fetchrow(
        f"""INSERT INTO endpoints (id, account_id, url, event_types, description, enabled,
                disabled_reason, rate_limit_per_s, max_in_flight, metadata, secret,
                created_at, updated_at)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $12)
            RETURNING {_COLUMNS}""",
        endpoint_id, spec.account_id, spec.url, list(spec.event_types), spec.description,
        spec.enabled, None if spec.enabled else MANUAL_DISABLED_REASON, spec.rate_limit_per_s,
        spec.max_in_flight, spec.metadata, secret, now,
    )
    return row


async def get_endpoint(conn: asyncpg.Connection, endpoint_id: str, *,
                       for_update: bool = False) -> asyncpg.Record | None:
    """The live endpoint ``endpoint_id`` (public columns), or None if absent or deleted.

    ``for_update`` locks the row until the caller's transaction ends.
    """
    lock = " FOR UPDATE" if for_update else ""
    row: asyncpg.Record | None = await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM endpoints WHERE id = $1 AND deleted_at IS NULL{lock}",
        endpoint_id)
    return row


async def list_endpoints(conn: asyncpg.Connection, account_id: str | None,
                         before_id: str | None, limit: int) -> list[asyncpg.Record]:
    """Up to ``limit`` live endpoints, newest first, with ids below ``before_id`` if given.

    Keyset on the immutable primary key: walking pages never returns a row twice.
    """
    rows: list[asyncpg.Record] = await conn.fetch(
        f"""SELECT {_COLUMNS} FROM endpoints
            WHERE deleted_at IS NULL
              AND ($1::text IS NULL OR account_id = $1)
              AND ($2::text IS NULL OR id < $2)
            ORDER BY id DESC LIMIT $3""",
        account_id, before_id, limit)
    return rows


async def update_endpoint(conn: asyncpg.Connection, current: asyncpg.Record,
                          changes: Mapping[str, Any], now: datetime) -> asyncpg.Record:
    """Apply validated ``changes`` to the locked row ``current``; returns the new row.

    Enabling a disabled endpoint clears ``disabled_reason`` and resets its circuit (the
    ``endpoint_health`` row, if any). Disabling an enabled one records ``disabled_reason``
    ``"manual"``; disabling an already disabled one keeps its reason (e.g. ``"gone"``).
    """
    unknown = set(changes) - _UPDATABLE
    if unknown:
        raise ValueError(f"not updatable: {sorted(unknown)}")
    values = dict(changes)
    if "enabled" in values and values["enabled"] != current["enabled"]:
        values["disabled_reason"] = None if values["enabled"] else MANUAL_DISABLED_REASON
        if values["enabled"]:
            await reset_endpoint_health(conn, current["id"])
    names = sorted(values)
    assignments = ", ".join(f"{name} = ${i}" for i, name in enumerate(names, start=3))
    row: asyncpg.Record = await conn.fetchrow(
        f"UPDATE endpoints SET updated_at = $2, {assignments} WHERE id = $1 "
        f"RETURNING {_COLUMNS}",
        current["id"], now, *(values[name] for name in names))
    return row


async def reset_endpoint_health(conn: asyncpg.Connection, endpoint_id: str) -> None:
    """Close the endpoint's circuit and forget its failure streak (no-op without a row)."""
    await conn.execute(
        """UPDATE endpoint_health SET consecutive_failures = 0, failing_since = NULL,
               circuit_open_until = NULL, updated_at = now()
           WHERE endpoint_id = $1""", endpoint_id)


async def soft_delete_endpoint(conn: asyncpg.Connection, endpoint_id: str,
                               now: datetime) -> tuple[str, int] | None:
    """Mark the endpoint deleted and cancel its pending and retrying deliveries.

    Must run in a transaction so both happen or neither. Returns ``(account_id, cancelled)``,
    or None when the endpoint does not exist or was already deleted.
    """
    account_id: str | None = await conn.fetchval(
        """UPDATE endpoints SET deleted_at = $2, updated_at = $2
           WHERE id = $1 AND deleted_at IS NULL RETURNING account_id""", endpoint_id, now)
    if account_id is None:
        return None
    status: str = await conn.execute(
        f"""UPDATE deliveries SET status = 'cancelled', next_attempt_at = NULL, updated_at = $2
           WHERE endpoint_id = $1 AND status IN {OPEN_SQL}""", endpoint_id, now)
    return account_id, int(status.rsplit(" ", 1)[-1])


async def get_secret(conn: asyncpg.Connection, endpoint_id: str) -> str | None:
    """The current signing secret of a live endpoint, or None."""
    secret: str | None = await conn.fetchval(
        "SELECT secret FROM endpoints WHERE id = $1 AND deleted_at IS NULL", endpoint_id)
    return secret


async def rotate_secret(conn: asyncpg.Connection, endpoint_id: str, new_secret: str,
                        grace_period_s: int, now: datetime) -> str | None:
    """Make ``new_secret`` current; the old one keeps signing for ``grace_period_s`` seconds.

    With a grace of 0 no previous secret is kept. A previous secret still in its grace from an
    earlier rotation is replaced (at most two secrets sign at once). Returns the account id, or
    None when the endpoint does not exist or is deleted.
    """
    expires = now + timedelta(seconds=grace_period_s) if grace_period_s > 0 else None
    account_id: str | None = await conn.fetchval(
        """UPDATE endpoints
           SET previous_secret = CASE WHEN $4::timestamptz IS NULL THEN NULL ELSE secret END,
               previous_secret_expires_at = $4, secret = $2, updated_at = $3
           WHERE id = $1 AND deleted_at IS NULL RETURNING account_id""",
        endpoint_id, new_secret, now, expires)
    return account_id


async def load_routes(conn: asyncpg.Connection,
                      account_ids: Collection[str]) -> dict[str, list[tuple[str, list[str]]]]:
    """``account_id -> [(endpoint_id, event_types), ...]`` of enabled live endpoints, in one query.

    Every requested account is a key of the result, with an empty list when it has none.
    Endpoints are in id (creation) order.
    """
    result: dict[str, list[tuple[str, list[str]]]] = {account: [] for account in account_ids}
    rows = await conn.fetch(
        """SELECT id, account_id, event_types FROM endpoints
           WHERE account_id = ANY($1::text[]) AND enabled AND deleted_at IS NULL
           ORDER BY account_id, id""", list(result))
    for row in rows:
        result[row["account_id"]].append((row["id"], list(row["event_types"])))
    return result
