"""SQL for history partitions: list, create, check for open work, detach and drop.

Every function takes a connection *not* inside a transaction block unless it says otherwise
(``DETACH PARTITION ... CONCURRENTLY`` refuses to run in one). All may raise asyncpg errors.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

import asyncpg

from shared.core.delivery_status import OPEN_STATUSES
from shared.core.ids import lowest_id_at
from shared.core.retention import HISTORY_TABLES, Unit

_PARENTS = [t for t, _ in HISTORY_TABLES]
_OPEN = list(OPEN_STATUSES)

# How long a purge waits for a lock before giving up until the next round: a DDL statement
# queued behind a long query would otherwise hold up every query queued behind it.
LOCK_TIMEOUT = "5s"


async def attached_partitions(conn: asyncpg.Connection) -> list[str]:
    """Names of the partitions attached to events, deliveries and attempts (detach-pending
    ones excluded)."""
    rows = await conn.fetch(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
        " WHERE i.inhparent = ANY($1::regclass[]) AND NOT i.inhdetachpending"
        " ORDER BY c.relname", _PARENTS)
    return [r["relname"] for r in rows]


async def detach_pending(conn: asyncpg.Connection) -> list[tuple[str, str]]:
    """(parent, partition) pairs whose ``DETACH ... CONCURRENTLY`` was interrupted."""
    rows = await conn.fetch(
        "SELECT p.relname AS parent, c.relname AS name FROM pg_inherits i"
        " JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent"
        " WHERE i.inhparent = ANY($1::regclass[]) AND i.inhdetachpending", _PARENTS)
    return [(r["parent"], r["name"]) for r in rows]


async def detached_leftovers(conn: asyncpg.Connection) -> list[str]:
    """History tables (``<table>_pYYYYMMDD``, ``<table>_legacy``) that exist as plain tables,
    detached but not dropped (a purge that stopped between the two)."""
    rows = await conn.fetch(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = current_schema() AND c.relkind = 'r' AND NOT c.relispartition"
        " AND c.relname ~ '^(events|deliveries|attempts)_(p[0-9]{8}|legacy)$'")
    return [r["relname"] for r in rows]


async def legacy_cutover(conn: asyncpg.Connection) -> datetime | None:
    """Where the legacy partitions end; None when there are none (a database that had no
    history when it was migrated, or whose legacy partitions have been dropped)."""
    value = await conn.fetchval(
        "SELECT cutover_at FROM partition_cutover WHERE EXISTS (SELECT 1 FROM pg_class"
        " WHERE relname = ANY($1::text[]) AND relnamespace = current_schema()::regnamespace)",
        [f"{t}_legacy" for t in _PARENTS])
    return value if isinstance(value, datetime) else None


async def create_partition(conn: asyncpg.Connection, table: str, prefix: str, day: date) -> bool:
    """Create and attach the partition of ``table`` for ``day`` if missing; True if created.
    Takes a SHARE UPDATE EXCLUSIVE lock on the parent (writes and reads go on)."""
    async with conn.transaction():
        await conn.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
        created = await conn.fetchval(
            "SELECT postwire_create_day_partition($1, $2, $3)", table, prefix, day)
    return bool(created)


async def open_deliveries(conn: asyncpg.Connection, unit: Unit) -> int:
    """Deliveries still pending or retrying that dropping ``unit`` would remove: those created
    in it, and those of the next day whose event is in it (an event and its deliveries are
    made in one transaction, so its deliveries are never a day younger than itself)."""
    lo = lowest_id_at("dlv", 0 if unit.lower is None else _ms(unit.lower))
    hi = lowest_id_at("dlv", _ms(unit.upper))
    next_hi = lowest_id_at("dlv", _ms(unit.upper + timedelta(days=1)))
    event_hi = lowest_id_at("evt", _ms(unit.upper))
    count = await conn.fetchval(
        "SELECT (SELECT count(*) FROM deliveries WHERE id >= $1 AND id < $2"
        "         AND status = ANY($5::text[]))"
        "     + (SELECT count(*) FROM deliveries WHERE id >= $2 AND id < $3"
        "         AND status = ANY($5::text[]) AND event_id < $4)",
        lo, hi, next_hi, event_hi, _OPEN)
    return int(count or 0)


async def detach_and_drop(conn: asyncpg.Connection, parent: str, name: str, *,
                          finalize: bool = False) -> None:
    """Detach ``name`` from ``parent`` without blocking readers or writers, then drop it.

    ``DETACH ... CONCURRENTLY`` takes only SHARE UPDATE EXCLUSIVE locks and waits for the
    transactions that may still see the partition; ``finalize`` completes one that was
    interrupted. The DROP then touches a table nobody can reach any more.
    """
    await conn.execute(f"SET lock_timeout = '{LOCK_TIMEOUT}'")
    try:
        mode = "FINALIZE" if finalize else "CONCURRENTLY"
        await conn.execute(f'ALTER TABLE "{parent}" DETACH PARTITION "{name}" {mode}')
        await conn.execute(f'DROP TABLE "{name}"')
    finally:
        await conn.execute("RESET lock_timeout")


async def drop_table(conn: asyncpg.Connection, name: str) -> None:
    """Drop a detached leftover."""
    await conn.execute(f'DROP TABLE IF EXISTS "{name}"')


def _ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)
