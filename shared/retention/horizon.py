"""The retention horizon: what has been purged, so a missing row can be called past retention.

``retention_horizon`` holds one row per family (``events``, ``dead_letters``, ``audit_log``):
rows created before ``purged_before`` may have been removed. The purge moves it forward
(never back) *before* it removes anything, holding the transaction-level advisory lock
:data:`HORIZON_LOCK` exclusively; a replay takes the same lock shared before it reads the
horizon. So a replay and a purge of the same day cannot cross: one waits for the other, and a
replay of a delivery below the horizon is refused. (An advisory lock rather than a row lock:
before the first purge there is no row to lock.) Transaction-level locks end with the
transaction, so nothing is left on a pooled connection.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TypeAlias

import asyncpg

from shared.core.errors import NotFound
from shared.core.ids import id_unix_ms, lowest_id_at
from shared.core.retention import past_retention_message

Conn: TypeAlias = asyncpg.Connection | asyncpg.Pool

HORIZON_LOCK = 0x686F7269_7A6F6E21 & 0x7FFFFFFFFFFFFFFF  # "horizon!"


async def advance(conn: asyncpg.Connection, family: str, purged_before: datetime) -> None:
    """Move the horizon of ``family`` to ``purged_before`` if that is later, in a transaction
    of its own that first waits for every replay transaction in progress."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", HORIZON_LOCK)
        await conn.execute(
            "INSERT INTO retention_horizon (family, purged_before) VALUES ($1, $2)"
            " ON CONFLICT (family) DO UPDATE SET purged_before = EXCLUDED.purged_before,"
            " updated_at = now() WHERE retention_horizon.purged_before < EXCLUDED.purged_before",
            family, purged_before)


async def read(conn: Conn, family: str) -> datetime | None:
    """The horizon of ``family`` (None: nothing purged yet)."""
    value = await conn.fetchval(
        "SELECT purged_before FROM retention_horizon WHERE family = $1", family)
    return value if isinstance(value, datetime) else None


async def history_floor_ids(conn: asyncpg.Connection) -> tuple[str, str] | None:
    """(lowest event id, lowest delivery id) still inside retention; None when nothing was
    ever purged. Must run inside the caller's transaction: until it ends, no purge can move
    the horizon (the shared :data:`HORIZON_LOCK`)."""
    await conn.execute("SELECT pg_advisory_xact_lock_shared($1)", HORIZON_LOCK)
    horizon = await read(conn, "events")
    if horizon is None:
        return None
    ms = int(horizon.timestamp() * 1000)
    return lowest_id_at("evt", ms), lowest_id_at("dlv", ms)


async def past_retention(conn: Conn, noun: str, object_id: str) -> str | None:
    """For an id that was not found: the 404 message saying it is past retention, when its
    creation time (from its ULID) is below the events horizon; else None (plain not found)."""
    ms = id_unix_ms(object_id)
    if ms is None:
        return None
    horizon = await read(conn, "events")
    # compared in milliseconds: an id may claim a time past year 9999 (no datetime holds it)
    if horizon is None or ms >= horizon.timestamp() * 1000:
        return None
    created = datetime.fromtimestamp(ms / 1000, UTC)
    return past_retention_message(noun, object_id, created, horizon)


async def not_found(conn: Conn, noun: str, object_id: str, message: str,
                    param: str | None = None) -> NotFound:
    """The 404 to raise for a missing ``object_id``: past retention when it was purged (the
    message says so), else ``message``."""
    purged = await past_retention(conn, noun, object_id)
    return NotFound(purged or message, param=param)
