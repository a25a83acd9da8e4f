"""The idempotency-key store in Postgres: claiming keys inside a group commit, and purging.

Claiming is one ``INSERT ... ON CONFLICT (account_id, key) DO UPDATE ... WHERE expired``: a key
is won by exactly one transaction even when duplicates race in concurrent batches (the second
insert waits for the first transaction and then sees its row). A row older than the 24 h window
is replaced by the new request, so an expired key starts a new life. Keys are inserted in sorted
order, so two batches claiming overlapping keys cannot deadlock. Rows whose key was not won are
read back in the same transaction: the ON CONFLICT locked them, so they are committed rows of
another request and their stored response can be replayed.

Pure rules (what "the same request" means) live in :mod:`shared.core.idempotency`.
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
from shared.core.idempotency import WINDOW, AccountKey, StoredKey, replay
from shared.core.timefmt import utcnow

log = logging.getLogger(__name__)

_CLAIM_SQL = """
INSERT INTO idempotency_keys AS k (account_id, key, request_hash, event_id, response, created_at)
SELECT c.account_id, c.key, c.request_hash, c.event_id, c.response, $6
  FROM unnest($1::text[], $2::text[], $3::bytea[], $4::text[], $5::bytea[])
       AS c(account_id, key, request_hash, event_id, response)
ON CONFLICT (account_id, key) DO UPDATE
   SET request_hash = EXCLUDED.request_hash, event_id = EXCLUDED.event_id,
       response = EXCLUDED.response, created_at = EXCLUDED.created_at
 WHERE k.created_at <= $7
RETURNING k.account_id, k.key
"""

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


@dataclass(frozen=True, slots=True)
class KeyClaim:
    """A request that wants ``key``: its hash, its event and its 202 body (replayed later)."""

    account_id: str
    key: str
    request_hash: bytes
    event_id: str
    response: bytes


async def claim_keys(conn: asyncpg.Connection, claims: Sequence[KeyClaim],
                     now: datetime) -> tuple[set[AccountKey], dict[AccountKey, StoredKey]]:
    """Claim distinct keys inside the caller's transaction.

    Returns ``(won, taken)``: the keys now owned by this transaction, and for every other key
    the live record another request stored (to be replayed or refused with 409). May block
    while a concurrent transaction holds the same key. ``claims`` must not repeat a key.
    """
    if not claims:
        return set(), {}
    ordered = sorted(claims, key=lambda c: (c.account_id, c.key))
    rows = await conn.fetch(
        _CLAIM_SQL, [c.account_id for c in ordered], [c.key for c in ordered],
        [c.request_hash for c in ordered], [c.event_id for c in ordered],
        [c.response for c in ordered], now, now - WINDOW)
    won = {(r["account_id"], r["key"]) for r in rows}
    lost = [c for c in ordered if (c.account_id, c.key) not in won]
    if not lost:
        return won, {}
    stored = await conn.fetch(_LOAD_SQL, [c.account_id for c in lost], [c.key for c in lost])
    taken = {(r["account_id"], r["key"]): StoredKey(bytes(r["request_hash"]), bytes(r["response"]))
             for r in stored}
    return won, taken


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
        if record is None:  # cannot happen: a key not won is locked by another commit
            outcomes.append(Unavailable("idempotency key record vanished; retry"))
            continue
        param = (f"{event.param_prefix}idempotency_key" if event.param_prefix
                 else "Idempotency-Key")
        try:
            outcomes.append(Accepted(replay(record, event.request_hash or b"", param), True))
        except IdempotencyConflict as exc:
            outcomes.append(exc)
    return outcomes


class IdempotencyPurger:
    """Background loop deleting expired keys, a bounded chunk at a time.

    Expired rows are harmless (a new request replaces them), so a failing purge only logs.
    """

    def __init__(self, pool: asyncpg.Pool, interval_s: float = 300.0) -> None:
        self._pool = pool
        self._interval_s = interval_s
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="idempotency-purge")

    async def stop(self) -> None:
        """Cancel the loop and wait for it."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            try:
                deleted = await purge_expired(self._pool, utcnow())
                while deleted > 0:  # a backlog: keep going, in bounded chunks
                    deleted = await purge_expired(self._pool, utcnow())
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("idempotency purge failed: %s", exc)
