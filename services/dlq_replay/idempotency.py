"""Idempotency-Key records of replay requests: per operator, for a bounded window.

A key only deduplicates a *retried identical request* (same operator, same key, same event or
bulk scope, same body): it gets the stored response back and nothing is queued or created
again. The same key with a different request is a 409 ``idempotency_conflict``. A new request
without a key (or with a new key) always replays again: a replay is never silently swallowed.

Claiming a key inserts its row first thing in the replay's transaction; a concurrent request
with the same key waits on that row until the first one commits (then gets its response) or
rolls back (then claims the key itself).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import asyncpg

from shared.core.errors import IdempotencyConflict


@dataclass(frozen=True)
class IdempotencyInput:
    """The key of a request and the fingerprint of its body (see ``schemas.request_hash``)."""

    key: str
    request_hash: bytes
    window_s: float


@dataclass(frozen=True)
class StoredResponse:
    """The response a finished request with this key got."""

    body: dict[str, Any]


_CLAIM_SQL = """
INSERT INTO admin_idempotency_keys (operator, key, request_hash) VALUES ($1, $2, $3)
ON CONFLICT (operator, key) DO UPDATE
    SET request_hash = EXCLUDED.request_hash, response = NULL, replay_id = NULL,
        created_at = now()
    WHERE admin_idempotency_keys.created_at < now() - make_interval(secs => $4)
RETURNING 1
"""


async def claim_key(conn: asyncpg.Connection, *, operator: str, key: str, request_hash: bytes,
                    window_s: float) -> StoredResponse | None:
    """Claim ``key`` inside the caller's transaction.

    Returns None when the caller now owns the key (new, or the old record expired) and must
    :func:`store_response` before committing; returns the stored response for a retried
    identical request; raises IdempotencyConflict when the key was used for another request.
    """
    if await conn.fetchval(_CLAIM_SQL, operator, key, request_hash, window_s) is not None:
        return None
    row = await conn.fetchrow(
        "SELECT request_hash, response FROM admin_idempotency_keys"
        " WHERE operator = $1 AND key = $2", operator, key)
    if row is None or row["response"] is None:  # vanished or unfinished: a retry will settle
        raise IdempotencyConflict("a request with this Idempotency-Key is in progress; retry",
                                  param="Idempotency-Key")
    if bytes(row["request_hash"]) != request_hash:
        raise IdempotencyConflict(
            "this Idempotency-Key was already used for a different replay request",
            param="Idempotency-Key")
    return StoredResponse(row["response"])


async def store_response(conn: asyncpg.Connection, *, operator: str, key: str, replay_id: str,
                         response: dict[str, Any]) -> None:
    """Record the response of the request that owns ``key`` (same transaction as the replay)."""
    await conn.execute(
        "UPDATE admin_idempotency_keys SET response = $3, replay_id = $4"
        " WHERE operator = $1 AND key = $2", operator, key, response, replay_id)


async def purge_expired(pool: asyncpg.Pool, window_s: float) -> int:
    """Delete records older than the window; returns how many went."""
    status = await pool.execute(
        "DELETE FROM admin_idempotency_keys WHERE created_at < now() - make_interval(secs => $1)",
        window_s)
    return int(status.split()[-1])
