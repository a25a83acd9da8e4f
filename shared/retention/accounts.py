"""Shorter retention for one account: its old history deleted in short batches.

Days are dropped whole for every account, so an account that must keep less
(``POSTWIRE_RETENTION_ACCOUNT_DAYS``) has its older events, with their deliveries and
attempts, deleted row by row: the cost is that account's own volume, never the others'.
An event with a delivery still pending or retrying is kept (and revisited next round); a
dead letter follows its own retention. Each batch is one transaction that locks the
deliveries it deletes (``FOR UPDATE``), so a replay either committed first (and the event is
kept because its delivery is open again) or finds the event gone. May raise asyncpg errors.
"""

from __future__ import annotations

from datetime import datetime

import asyncpg

from shared.core.delivery_status import OPEN_STATUSES
from shared.core.ids import id_unix_ms, lowest_id_at
from shared.core.retention import DELIVERY_WINDOW_MS, ID_SLACK_MS

EVENT_BATCH = 1000
MAX_BATCHES_PER_ROUND = 100  # a round stays bounded; the next one carries on


async def purge_account(conn: asyncpg.Connection, account_id: str, cutoff: datetime) -> int:
    """Delete the account's events created before ``cutoff`` (with their deliveries and
    attempts) unless a delivery of theirs is open; returns the number of events deleted."""
    below = lowest_id_at("evt", int(cutoff.timestamp() * 1000))
    after = ""
    deleted = 0
    for _ in range(MAX_BATCHES_PER_ROUND):
        ids = [r["id"] for r in await conn.fetch(
            "SELECT id FROM events WHERE account_id = $1 AND id < $2 AND id > $3"
            " ORDER BY id LIMIT $4", account_id, below, after, EVENT_BATCH)]
        if not ids:
            break
        deleted += await _delete_batch(conn, ids)
        after = ids[-1]
        if len(ids) < EVENT_BATCH:
            break
    return deleted


async def _delete_batch(conn: asyncpg.Connection, event_ids: list[str]) -> int:
    first, last = id_unix_ms(event_ids[0]), id_unix_ms(event_ids[-1])
    if first is None or last is None:
        raise ValueError("event ids must carry their creation time")
    lo = lowest_id_at("dlv", first - ID_SLACK_MS)
    hi = lowest_id_at("dlv", last + DELIVERY_WINDOW_MS)
    async with conn.transaction():
        rows = await conn.fetch(
            "SELECT id, event_id, status FROM deliveries WHERE event_id = ANY($1::text[])"
            " AND id >= $2 AND id < $3 ORDER BY id FOR UPDATE", event_ids, lo, hi)
        kept = {r["event_id"] for r in rows if r["status"] in OPEN_STATUSES}
        doomed = [e for e in event_ids if e not in kept]
        deliveries = [r["id"] for r in rows if r["event_id"] not in kept]
        await conn.execute("DELETE FROM attempts WHERE delivery_id = ANY($1::text[])",
                           deliveries)
        await conn.execute("DELETE FROM deliveries WHERE id = ANY($1::text[])", deliveries)
        status = await conn.execute("DELETE FROM events WHERE id = ANY($1::text[])", doomed)
    return int(status.split()[-1])
