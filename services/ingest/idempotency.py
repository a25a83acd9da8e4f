"""Idempotency keys in a group commit: who won a key, what every request is answered.

A key is claimed inside the batch statement (:func:`events_repo.write_batch`) with ``INSERT ...
ON CONFLICT (account_id, key) DO UPDATE ... WHERE expired``: exactly one transaction wins a key
even when duplicates race in concurrent batches (the second insert waits for the first
transaction, then sees its row), and a row older than the 24 h window is replaced, so an expired
key starts a new life. Within one batch only the first use of a key is a candidate; later uses
share its outcome. A key that was not won is read back after the commit (:func:`load_keys`) and
its stored response is replayed, or the request refused with 409 when its hash differs.
Expired rows are deleted in the background (:class:`IdempotencyPurger`).

Pure rules (what "the same request" means) live in :mod:`shared.core.event_fingerprint`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from services.ingest.event_validation import EventInput
from shared.core.errors import ApiError, IdempotencyConflict, Unavailable
from shared.core.event_fingerprint import WINDOW, AccountKey, StoredKey, replay
from shared.core.timefmt import utcnow
from shared.tasks import BackgroundLoop

log = logging.getLogger(__name__)

_LOAD_SQL = """
SELECT k.account_id, k.key, k.request_hash, k.response
  FROM idempotency_keys k
  JOIN unnest($1::text[], $2::text[]) AS w(account_id, key)
    ON k.account_id = w.account_id AND k.key = w.key
"""

_PURGE_SQL = """
DELETE FROM idempotency_keys WHERE ctid = ANY(ARRAY(
    SELECT ctid FROM idempotency_keys WHERE created_at <= $1 LIMIT $2))
"""


@dataclass(frozen=True, slots=True)
class Accepted:
    """One accepted event: the exact 202 body, and whether it replays a stored response."""

    body: bytes
    replayed: bool


Outcome = Accepted | ApiError


def account_key(event: EventInput) -> AccountKey | None:
    """The (account_id, idempotency key) an event is protected by, if any."""
    return None if event.idempotency_key is None else (event.account_id, event.idempotency_key)


async def load_keys(conn: asyncpg.Connection,
                    keys: Sequence[AccountKey]) -> dict[AccountKey, StoredKey]:
    """The stored records of ``keys`` (those that exist), for replay or 409."""
    if not keys:
        return {}
    rows = await conn.fetch(_LOAD_SQL, [k[0] for k in keys], [k[1] for k in keys])
    return {(r["account_id"], r["key"]): StoredKey(bytes(r["request_hash"]), bytes(r["response"]))
            for r in rows}


async def purge_expired(pool: asyncpg.Pool, now: datetime, batch: int = 5000) -> int:
    """Delete up to ``batch`` keys older than the window; returns how many were deleted."""
    status = await pool.execute(_PURGE_SQL, now - WINDOW, batch)
    return int(status.split()[-1])


def resolve_outcomes(events: Sequence[EventInput], first: dict[AccountKey, int],
                     responses: dict[int, bytes], won: set[AccountKey],
                     taken: dict[AccountKey, StoredKey]) -> list[Outcome]:
    """Each event's answer after its group commit.

    ``first`` maps each key to the index of its first use; ``responses`` holds the rendered
    202 body of every event that was a candidate for insertion (by index); ``won``/``taken``
    come from :func:`claim_keys`. An event without a key, or the first use of a key this
    commit won, gets its own response; every other use of a key gets the key's stored response
    (a replay) when its request hash matches, or a 409.
    """
    stored = dict(taken)
    for won_key in won:
        leader = first[won_key]
        stored[won_key] = StoredKey(events[leader].request_hash or b"", responses[leader])
    outcomes: list[Outcome] = []
    for index, event in enumerate(events):
        key = account_key(event)
        if key is None or (key in won and first[key] == index):
            outcomes.append(Accepted(responses[index], replayed=False))
            continue
        record = stored.get(key)
        if record is None:  # its read-back failed, or it expired and was purged meanwhile
            outcomes.append(Unavailable(
                "the stored response of this idempotency key could not be read; retry"))
            continue
        param = (f"{event.param_prefix}idempotency_key" if event.param_prefix
                 else "Idempotency-Key")
        try:
            outcomes.append(Accepted(replay(record, event.request_hash or b"", param), True))
        except IdempotencyConflict as exc:
            outcomes.append(exc)
    return outcomes


class IdempotencyPurger(BackgroundLoop):
    """Background loop deleting expired keys, a bounded chunk at a time.

    Expired rows are harmless (a new request replaces them), so a failing purge only logs.
    """

    TASK_NAME = "idempotency-purge"

    def __init__(self, pool: asyncpg.Pool, interval_s: float = 300.0) -> None:
        self._pool = pool
        self._interval_s = interval_s

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            try:
                deleted = await purge_expired(self._pool, utcnow())
                while deleted > 0:  # a backlog: keep going, in bounded chunks
                    deleted = await purge_expired(self._pool, utcnow())
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("idempotency purge failed: %s", exc)
