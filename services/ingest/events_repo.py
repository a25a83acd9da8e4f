"""SQL for events, deliveries and their attempts. Every statement is batched (``unnest``).

Writes run inside the caller's group-commit transaction; reads take a pool or connection.
Lock order inside a write transaction, the same for every batch so batches cannot deadlock:
endpoint rows (FOR SHARE, sorted by id), idempotency keys (sorted), ordering keys (sorted).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TypeAlias

import asyncpg

Conn: TypeAlias = asyncpg.Connection | asyncpg.Pool


@dataclass(frozen=True, slots=True)
class EventRow:
    """One ``events`` row to insert."""

    id: str
    account_id: str
    type: str
    ordering_key: str | None
    body: bytes
    delivery_count: int


@dataclass(frozen=True, slots=True)
class DeliveryRow:
    """One ``deliveries`` row to insert (status ``pending``)."""

    id: str
    event_id: str
    endpoint_id: str
    account_id: str
    ordering_key: str | None
    sequence: int | None


async def lock_live_endpoints(conn: asyncpg.Connection,
                              endpoint_ids: Sequence[str]) -> dict[str, list[str]]:
    """Of ``endpoint_ids``, those enabled and not deleted, with their current ``event_types``,
    share-locked until commit.

    The share lock makes a concurrent delete, disable or patch wait for this transaction, so
    the delete's "cancel the endpoint's open deliveries" step sees the deliveries inserted
    here; an endpoint deleted or disabled just before is excluded (its row is re-checked after
    the wait).
    """
    if not endpoint_ids:
        return {}
    rows = await conn.fetch(
        "SELECT id, event_types FROM endpoints WHERE id = ANY($1::text[]) AND enabled"
        " AND deleted_at IS NULL ORDER BY id FOR SHARE", sorted(set(endpoint_ids)))
    return {r["id"]: r["event_types"] for r in rows}


async def insert_events(conn: asyncpg.Connection, rows: Sequence[EventRow],
                        created_at: datetime) -> None:
    """Insert ``rows``, all created at ``created_at``."""
    if not rows:
        return
    await conn.execute(
        "INSERT INTO events (id, account_id, type, ordering_key, body, created_at, delivery_count)"
        " SELECT e.id, e.account_id, e.type, e.ordering_key, e.body, $6, e.delivery_count"
        " FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bytea[], $7::int[])"
        " AS e(id, account_id, type, ordering_key, body, delivery_count)",
        [r.id for r in rows], [r.account_id for r in rows], [r.type for r in rows],
        [r.ordering_key for r in rows], [r.body for r in rows], created_at,
        [r.delivery_count for r in rows])


async def allocate_sequences(conn: asyncpg.Connection,
                             counts: dict[tuple[str, str], int]) -> dict[tuple[str, str], int]:
    """Reserve ``n`` consecutive sequence numbers per (endpoint_id, ordering_key).

    Returns the FIRST number reserved for each pair (sequences start at 1). Locks each pair's
    row until commit, so concurrent batches append to one key one after the other.
    """
    if not counts:
        return {}
    pairs = sorted(counts)
    rows = await conn.fetch(
        "INSERT INTO ordering_keys AS o (endpoint_id, ordering_key, last_sequence)"
        " SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[])"
        " ON CONFLICT (endpoint_id, ordering_key)"
        " DO UPDATE SET last_sequence = o.last_sequence + EXCLUDED.last_sequence"
        " RETURNING o.endpoint_id, o.ordering_key, o.last_sequence",
        [p[0] for p in pairs], [p[1] for p in pairs], [counts[p] for p in pairs])
    return {(r["endpoint_id"], r["ordering_key"]):
            r["last_sequence"] - counts[(r["endpoint_id"], r["ordering_key"])] + 1 for r in rows}


async def insert_deliveries(conn: asyncpg.Connection, rows: Sequence[DeliveryRow],
                            created_at: datetime, due_at: datetime) -> None:
    """Insert ``rows`` as ``pending`` deliveries whose first attempt is due at ``due_at``."""
    if not rows:
        return
    await conn.execute(
        "INSERT INTO deliveries (id, event_id, endpoint_id, account_id, ordering_key, sequence,"
        " status, next_attempt_at, created_at, updated_at)"
        " SELECT d.id, d.event_id, d.endpoint_id, d.account_id, d.ordering_key, d.sequence,"
        " 'pending', $7, $8, $8"
        " FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bigint[])"
        " AS d(id, event_id, endpoint_id, account_id, ordering_key, sequence)",
        [r.id for r in rows], [r.event_id for r in rows], [r.endpoint_id for r in rows],
        [r.account_id for r in rows], [r.ordering_key for r in rows],
        [r.sequence for r in rows], due_at, created_at)


_EVENT_COLUMNS = "id, account_id, type, ordering_key, body, created_at, delivery_count"


async def fetch_event(conn: Conn, event_id: str) -> asyncpg.Record | None:
    """The ``events`` row, or None."""
    return await conn.fetchrow(f"SELECT {_EVENT_COLUMNS} FROM events WHERE id = $1", event_id)


async def fetch_event_deliveries(conn: Conn, event_id: str) -> list[asyncpg.Record]:
    """Every delivery of an event, oldest first."""
    return list(await conn.fetch(
        "SELECT id, endpoint_id, status, attempt_count, last_attempt_at, next_attempt_at,"
        " last_status_code FROM deliveries WHERE event_id = $1 ORDER BY id", event_id))


@dataclass(frozen=True, slots=True)
class EventFilter:
    """``GET /v1/events`` filters: ``since <= created_at < until``; ``before_id`` = cursor."""

    account_id: str
    type: str | None
    since: datetime | None
    until: datetime | None
    before_id: str | None


async def list_events(conn: Conn, where: EventFilter, limit: int) -> list[asyncpg.Record]:
    """Up to ``limit`` events, newest first (by id, which sorts by creation time).

    Only the filters given become SQL conditions, so each combination gets a plan that uses
    ``events_account_idx`` or ``events_account_type_idx``.
    """
    conditions = ["account_id = $1"]
    args: list[object] = [where.account_id]
    for column, op, value in (("type", "=", where.type), ("created_at", ">=", where.since),
                              ("created_at", "<", where.until), ("id", "<", where.before_id)):
        if value is not None:
            args.append(value)
            conditions.append(f"{column} {op} ${len(args)}")
    args.append(limit)
    return list(await conn.fetch(
        f"SELECT {_EVENT_COLUMNS} FROM events WHERE {' AND '.join(conditions)}"
        f" ORDER BY id DESC LIMIT ${len(args)}", *args))


async def delivery_exists(conn: Conn, delivery_id: str) -> bool:
    """True when a delivery with this id exists."""
    return bool(await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM deliveries WHERE id = $1)", delivery_id))


async def list_attempts(conn: Conn, delivery_id: str, after_attempt: int,
                        limit: int) -> list[asyncpg.Record]:
    """Up to ``limit`` attempts of a delivery numbered above ``after_attempt``, in order."""
    return list(await conn.fetch(
        "SELECT id, attempt, started_at, duration_ms, status_code, error, response_excerpt"
        " FROM attempts WHERE delivery_id = $1 AND attempt > $2 ORDER BY attempt LIMIT $3",
        delivery_id, after_attempt, limit))
