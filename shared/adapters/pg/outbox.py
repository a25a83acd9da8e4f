"""The transactional outbox: messages written with their state change, deleted once acked."""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from shared.adapters.kafka.publisher import Message


async def insert_outbox(conn: asyncpg.Connection, messages: Sequence[Message]) -> list[int]:
    """Insert ``messages`` inside the caller's transaction; returns their outbox ids."""
    if not messages:
        return []
    rows = await conn.fetch(
        "INSERT INTO outbox (topic, key, value)"
        " SELECT * FROM unnest($1::text[], $2::bytea[], $3::bytea[]) RETURNING id",
        [m.topic for m in messages], [m.key for m in messages], [m.value for m in messages],
    )
    return [r["id"] for r in rows]


async def delete_outbox(conn: asyncpg.Connection | asyncpg.Pool, ids: Sequence[int]) -> None:
    """Forget acknowledged messages."""
    if ids:
        await conn.execute("DELETE FROM outbox WHERE id = ANY($1::bigint[])", sorted(ids))


async def forget_published(conn: asyncpg.Connection, ids: Sequence[int]) -> None:
    """Delete rows the broker acknowledged, committed without waiting for the WAL flush.

    Losing this delete (Postgres crashing within its WAL writer delay) only leaves the rows
    for the relay, which publishes them again: a duplicate message, which consumers ignore
    because they check Postgres first. So it need not cost an fsync that a 202, a claim or
    an outcome would queue behind.
    """
    if ids:
        async with conn.transaction():
            await conn.execute("SET LOCAL synchronous_commit = off")
            await conn.execute("DELETE FROM outbox WHERE id = ANY($1::bigint[])", sorted(ids))


async def lock_due_outbox(conn: asyncpg.Connection, min_age_s: float,
                          limit: int) -> list[tuple[int, Message]]:
    """Lock (SKIP LOCKED) up to ``limit`` rows older than ``min_age_s``, oldest first.

    Must run inside a transaction; the locks keep other relays off these rows until it ends.
    """
    rows = await conn.fetch(
        "SELECT id, topic, key, value FROM outbox"
        " WHERE created_at < now() - make_interval(secs => $1)"
        " ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED",
        min_age_s, limit,
    )
    return [(r["id"], Message(r["topic"], bytes(r["key"]), bytes(r["value"]))) for r in rows]


async def outbox_state(conn: asyncpg.Connection, min_age_s: float) -> tuple[int, bool]:
    """How many messages wait to be published, and whether one of them is older than
    ``min_age_s`` (due for the relay): one statement, no transaction block."""
    row = await conn.fetchrow(
        "SELECT count(*) AS waiting,"
        " coalesce(min(created_at) < now() - make_interval(secs => $1), false) AS due"
        " FROM outbox", min_age_s)
    if row is None:  # cannot happen: an aggregate always returns one row
        raise RuntimeError("the outbox count returned no row")
    return int(row["waiting"]), bool(row["due"])
