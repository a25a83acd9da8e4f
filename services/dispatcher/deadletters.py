"""Dead-lettering inside the caller's transaction: status, dead-letter row, topic message.

Every function here must run inside a transaction that also writes the returned messages to
the outbox (``insert_outbox``), so the ``deadletter`` topic hears of every dead delivery at
least once. May raise asyncpg errors (the caller retries the whole transaction).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

import asyncpg
import orjson

from shared.adapters.kafka.publisher import Message
from shared.adapters.kafka.topics import DEADLETTER
from shared.core.delivery_status import OPEN_SQL
from shared.core.timefmt import format_ts

# A replayed delivery that dies again keeps its replay_count and moves to the top of the list
# (EXCLUDED.seq is the fresh value the bigserial default drew for the proposed row).
_UPSERT_SQL = """
INSERT INTO dead_letters (delivery_id, event_id, endpoint_id, account_id, type, reason,
                          attempt_count, last_status_code, last_error, dead_at)
SELECT d.id, d.event_id, d.endpoint_id, d.account_id, e.type, u.reason,
       d.attempt_count, d.last_status_code, d.last_error, now()
FROM unnest($1::text[], $2::text[]) AS u(id, reason)
JOIN deliveries d ON d.id = u.id
JOIN events e ON e.id = d.event_id
WHERE d.id = ANY($1::text[])
ORDER BY d.id
ON CONFLICT (delivery_id) DO UPDATE SET
    seq = EXCLUDED.seq, reason = EXCLUDED.reason, attempt_count = EXCLUDED.attempt_count,
    last_status_code = EXCLUDED.last_status_code, last_error = EXCLUDED.last_error,
    dead_at = EXCLUDED.dead_at
RETURNING delivery_id, event_id, endpoint_id, account_id, type, reason, attempt_count,
          last_status_code, last_error, dead_at
"""

_MARK_DEAD_SQL = f"""
UPDATE deliveries SET status = 'dead', next_attempt_at = NULL, lease_owner = NULL,
       lease_until = NULL, updated_at = now()
WHERE id = ANY($1::text[]) AND status IN {OPEN_SQL}
RETURNING id
"""

# Waiting deliveries of disabled endpoints; ones leased by another dispatcher are in flight and
# are left to their owner (their outcome, or their next claim, finishes them).
_KILL_WAITING_SQL = f"""
UPDATE deliveries SET status = 'dead', next_attempt_at = NULL, lease_owner = NULL,
       lease_until = NULL, updated_at = now()
WHERE endpoint_id = ANY($1::text[]) AND status IN {OPEN_SQL}
  AND (lease_until IS NULL OR lease_until <= now() OR lease_owner = $2)
RETURNING id
"""


def deadletter_message(row: Mapping[str, object]) -> Message:
    """The ``deadletter`` topic record of one dead-letter row (key: endpoint id)."""
    dead_at = row["dead_at"]
    if not isinstance(dead_at, datetime):
        raise TypeError("dead_at must be a datetime")
    value = {
        "delivery_id": row["delivery_id"], "event_id": row["event_id"],
        "endpoint_id": row["endpoint_id"], "account_id": row["account_id"],
        "type": row["type"], "reason": row["reason"], "attempt_count": row["attempt_count"],
        "last_status_code": row["last_status_code"], "last_error": row["last_error"],
        "dead_at": format_ts(dead_at),
    }
    return Message(DEADLETTER, str(row["endpoint_id"]).encode(), orjson.dumps(value))


async def record_dead_letters(conn: asyncpg.Connection,
                              reasons: Mapping[str, str]) -> list[Message]:
    """Upsert the dead-letter rows of deliveries already marked dead; returns topic messages."""
    if not reasons:
        return []
    ids = sorted(reasons)
    rows = await conn.fetch(_UPSERT_SQL, ids, [reasons[i] for i in ids])
    return [deadletter_message(dict(r)) for r in rows]


async def kill_deliveries(conn: asyncpg.Connection, delivery_ids: Sequence[str],
                          reason: str) -> list[Message]:
    """Mark the open ones among ``delivery_ids`` dead with ``reason``; returns topic messages."""
    if not delivery_ids:
        return []
    rows = await conn.fetch(_MARK_DEAD_SQL, sorted(set(delivery_ids)))
    return await record_dead_letters(conn, {r["id"]: reason for r in rows})


async def kill_waiting(conn: asyncpg.Connection, endpoint_ids: Sequence[str],
                       owner: str) -> list[Message]:
    """Dead-letter (``endpoint_disabled``) every waiting delivery of ``endpoint_ids``."""
    if not endpoint_ids:
        return []
    rows = await conn.fetch(_KILL_WAITING_SQL, sorted(set(endpoint_ids)), owner)
    return await record_dead_letters(conn, {r["id"]: "endpoint_disabled" for r in rows})
