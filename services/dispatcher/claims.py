"""The claim transaction: check a batch of consumed messages against Postgres, lease the ones
to attempt now, and settle the rest (skip, park, cancel, dead-letter).

One transaction per batch. The endpoints' ``endpoint_health`` rows are locked first, in id
order, so claims of one endpoint are serialised across every dispatcher process (that is what
makes ``max_in_flight`` and ``rate_limit_per_s`` global); everything read afterwards sees the
commits of the previous lock holder. The policy itself is :mod:`claim_plan` (pure).

Messages taken from the wake-up channel carry their outbox row (``Pending.outbox_id``): the
transaction that settles or leases such a delivery deletes that row, so it is never published
(:mod:`shared.core.wakeup`); a deferral keeps it, and so does a transaction that fails.

Round trips: BEGIN with the generic-plan setting, the endpoint lock, the read, the lease
count, the lease, and the wake-up rows' delete with COMMIT (six; the release to the pool sends
nothing after a normal end, ``acquire_settled``).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

import asyncpg

from services.dispatcher.claim_plan import (
    Action,
    Cancel,
    Claim,
    ClaimConfig,
    Defer,
    DeliveryRow,
    EndpointSlot,
    KillDisabled,
    Park,
    plan_claims,
)
from services.dispatcher.deadletters import kill_deliveries
from services.dispatcher.model import Claimed, Pending
from services.dispatcher.outcome_sql import release_next_in_keys
from services.dispatcher.rate_slots import send_window
from shared.adapters.kafka.publisher import Message
from shared.adapters.pg.outbox import insert_outbox
from shared.adapters.pg.pool import acquire_settled
from shared.core.backoff import CircuitState, EndpointHealth, circuit_state
from shared.core.delivery_status import OPEN_SQL
from shared.core.signing import active_secrets

log = logging.getLogger(__name__)

_ENSURE_HEALTH_SQL = """
INSERT INTO endpoint_health (endpoint_id)
SELECT id FROM endpoints WHERE id = ANY($1::text[]) ORDER BY id
ON CONFLICT DO NOTHING
"""

_LOCK_HEALTH_SQL = """
SELECT endpoint_id, consecutive_failures, failing_since, circuit_open_until, probe_until,
       rate_next_free_at
FROM endpoint_health WHERE endpoint_id = ANY($1::text[]) ORDER BY endpoint_id FOR UPDATE
"""

_ROWS_SQL = f"""
SELECT d.id, d.endpoint_id, d.status, d.generation, d.round_attempt_count, d.next_attempt_at,
       d.updated_at, coalesce(d.lease_until > statement_timestamp(), false) AS lease_active,
       (d.ordering_key IS NOT NULL AND EXISTS (
           SELECT 1 FROM deliveries p
           WHERE p.endpoint_id = d.endpoint_id AND p.ordering_key = d.ordering_key
             AND p.status IN {OPEN_SQL} AND p.id <> d.id
             AND (p.sequence < d.sequence OR p.lease_until > statement_timestamp())
       )) AS blocked,
       ep.enabled, ep.deleted_at IS NOT NULL AS deleted, ep.max_in_flight, ep.rate_limit_per_s,
       statement_timestamp() AS now
FROM deliveries d JOIN endpoints ep ON ep.id = d.endpoint_id
WHERE d.id = ANY($1::text[]) AND d.id >= $2 AND d.id <= $3
"""

# deliveries and events are partitioned by day (migration 0008). A custom plan prunes the
# ``= ANY`` arrays to their days but is planned again on every execution, and the ordering-key
# EXISTS of the read cannot be pruned: over 48 partitions, planning the read took 12-14 ms
# (0.3 ms unpartitioned) against 0.8 ms to run it. The claim transaction therefore uses
# generic plans, planned once per connection whatever the plan cache's cost estimate would
# pick. A generic plan cannot prune by the id array, so the read and the lease also bound the
# id by the batch's smallest and largest: scalar parameters, pruned when the executor starts,
# so only the days the batch spans are opened (500 ids of one day: read 7.8 ms -> 2.7 ms, as
# fast as unpartitioned; a day inside the bounds that holds none of the ids costs one index
# descent, tests/integration/test_retention_explain.py).
_GENERIC_PLANS_SQL = "SET LOCAL plan_cache_mode = force_generic_plan"
_BEGIN_SQL = f"BEGIN; {_GENERIC_PLANS_SQL}"   # one simple query: one round trip for both

_LEASED_SQL = """
SELECT endpoint_id, count(*) AS n FROM deliveries
WHERE endpoint_id = ANY($1::text[]) AND lease_until > $2
GROUP BY endpoint_id
"""

# Every statement is driven by an id array (``= ANY``) so that Postgres looks rows up by key
# instead of hashing whole tables, however the planner estimates the unnest.
# The lease and everything an attempt needs, in one round trip. The event and the endpoint
# are fetched per claimed row through LATERAL subqueries, i.e. by primary key, whatever the
# planner thinks of the CTE's size (a plain join once hashed whole tables).
_CLAIM_SQL = f"""
WITH leased AS (
    UPDATE deliveries d SET lease_owner = $1, lease_until = u.lease_until
    FROM unnest($2::text[], $3::timestamptz[]) AS u(id, lease_until)
    WHERE d.id = u.id AND d.id = ANY($2::text[]) AND d.id >= $4 AND d.id <= $5
      AND d.status IN {OPEN_SQL}
      AND (d.lease_until IS NULL OR d.lease_until <= statement_timestamp())
    RETURNING d.id, d.event_id, d.endpoint_id, d.account_id, d.ordering_key, d.attempt_count,
              d.round_attempt_count
)
SELECT l.*, e.type, e.body, e.created_at, ep.url, ep.secret, ep.previous_secret,
       ep.previous_secret_expires_at
FROM leased l
CROSS JOIN LATERAL (SELECT type, body, created_at FROM events WHERE id = l.event_id) e
CROSS JOIN LATERAL (SELECT url, secret, previous_secret, previous_secret_expires_at
                    FROM endpoints WHERE id = l.endpoint_id) ep
"""

# Keys of deliveries just dead-lettered at claim, whose successors are due their turn.
_KILLED_KEYS_SQL = """
SELECT DISTINCT endpoint_id, ordering_key FROM deliveries
WHERE id = ANY($1::text[]) AND ordering_key IS NOT NULL AND status = 'dead'
"""

_PARK_SQL = f"""
UPDATE deliveries d SET next_attempt_at = u.at, updated_at = now()
FROM unnest($1::text[], $2::timestamptz[]) AS u(id, at)
WHERE d.id = u.id AND d.id = ANY($1::text[]) AND d.status IN {OPEN_SQL}
  AND (d.lease_until IS NULL OR d.lease_until <= statement_timestamp())
"""

_CANCEL_SQL = f"""
UPDATE deliveries SET status = 'cancelled', next_attempt_at = NULL, lease_owner = NULL,
       lease_until = NULL, updated_at = now()
WHERE id = ANY($1::text[]) AND status IN {OPEN_SQL}
"""

_SAVE_SLOTS_SQL = """
UPDATE endpoint_health h SET probe_until = u.probe_until, rate_next_free_at = u.rate_next_free_at,
       updated_at = now()
FROM unnest($1::text[], $2::timestamptz[], $3::timestamptz[])
     AS u(endpoint_id, probe_until, rate_next_free_at)
WHERE h.endpoint_id = u.endpoint_id
"""


@dataclass
class ClaimResult:
    """What became of a batch. Every request is in exactly one of claimed, settled, deferred."""

    claimed: list[Claimed] = field(default_factory=list)
    settled: list[tuple[Pending, str]] = field(default_factory=list)  # (request, result label)
    deferred: list[tuple[Pending, float]] = field(default_factory=list)
    outbox_ids: list[int] = field(default_factory=list)
    messages: list[Message] = field(default_factory=list)
    endpoint_limits: dict[str, tuple[int, int | None]] = field(default_factory=dict)
    # unexpired leases per endpoint across all dispatchers right after this claim
    endpoint_leases: dict[str, int] = field(default_factory=dict)
    circuits: dict[str, CircuitState] = field(default_factory=dict)
    consumed_outbox_ids: list[int] = field(default_factory=list)  # wake-up rows deleted


def commit_sql(outbox_ids: Sequence[int]) -> str:
    """``COMMIT``, preceded by the delete of the wake-up rows ``outbox_ids`` when there are
    any: one simple query, so the delete costs no round trip of its own. A row locked by a
    relay (publishing it right now, after its minimum age) is skipped, not waited for: the
    claim must not hold its endpoint locks while a broker times out, and the relay deletes
    the row itself once published (the message then arrives by Kafka and follows the
    wake-up's ticket). Ids are integers, rendered as literals."""
    if not outbox_ids:
        return "COMMIT"
    listed = ",".join(str(int(i)) for i in sorted(set(outbox_ids)))
    return ("DELETE FROM outbox WHERE id IN (SELECT id FROM outbox"
            f" WHERE id = ANY('{{{listed}}}'::bigint[]) FOR UPDATE SKIP LOCKED); COMMIT")


def consumed_rows(batch: Sequence[Pending], deferred: Sequence[tuple[Pending, float]]
                  ) -> list[int]:
    """The wake-up rows a claim deletes: those of every request it settled or leased, i.e.
    whose action is durable in Postgres once it commits (a skip, park, cancel, dead letter or
    lease; a lost lease race means another claim decided). A deferred request waits in this
    process's memory only, so its row stays for the relay."""
    kept = {id(pending) for pending, _ in deferred}
    return [p.outbox_id for p in batch if p.outbox_id is not None and id(p) not in kept]


@dataclass
class _Sorted:
    """A batch's actions grouped by the statement that carries them out."""

    claims: dict[str, tuple[Pending, Claim]] = field(default_factory=dict)
    parks: dict[str, datetime] = field(default_factory=dict)
    cancels: list[str] = field(default_factory=list)
    kills: list[str] = field(default_factory=list)

    def add(self, req: Pending, action: Action, result: ClaimResult) -> None:
        delivery_id = req.message.delivery_id
        if isinstance(action, Claim):
            self.claims[delivery_id] = (req, action)
            return
        if isinstance(action, Defer):
            result.deferred.append((req, action.delay_s))
            return
        if isinstance(action, Park):
            self.parks[delivery_id] = action.at
            label = f"parked_{action.reason}"
        elif isinstance(action, Cancel):
            self.cancels.append(delivery_id)
            label = "cancelled"
        elif isinstance(action, KillDisabled):
            self.kills.append(delivery_id)
            label = "endpoint_disabled"
        else:
            label = f"skipped_{action.reason}"
        result.settled.append((req, label))


def _row(r: asyncpg.Record) -> DeliveryRow:
    return DeliveryRow(
        delivery_id=r["id"], endpoint_id=r["endpoint_id"], status=r["status"],
        generation=r["generation"], round_attempt_count=r["round_attempt_count"],
        next_attempt_at=r["next_attempt_at"], queued_at=r["updated_at"],
        lease_active=r["lease_active"], blocked=r["blocked"], endpoint_enabled=r["enabled"],
        endpoint_deleted=r["deleted"], max_in_flight=r["max_in_flight"],
        rate_limit_per_s=r["rate_limit_per_s"],
    )


def _slot(r: asyncpg.Record, leased: int) -> EndpointSlot:
    health = EndpointHealth(consecutive_failures=r["consecutive_failures"],
                            circuit_open_until=r["circuit_open_until"],
                            failing_since=r["failing_since"])
    return EndpointSlot(health=health, probe_until=r["probe_until"],
                        rate_next_free_at=r["rate_next_free_at"], leased=leased)


class ClaimStore:
    """Runs claim transactions for one dispatcher (``owner`` names its leases)."""

    def __init__(self, pool: asyncpg.Pool, owner: str, cfg: ClaimConfig,
                 rng: random.Random | None = None) -> None:
        self._pool = pool
        self._owner = owner
        self._cfg = cfg
        self._rng = rng or random.Random()
        self._known_health: set[str] = set()

    async def _ensure_health_rows(self, endpoint_ids: list[str]) -> None:
        missing = [e for e in endpoint_ids if e not in self._known_health]
        if missing:
            await self._pool.execute(_ENSURE_HEALTH_SQL, missing)
            self._known_health.update(missing)

    async def claim(self, batch: Sequence[Pending]) -> ClaimResult:
        """Claim or settle every request of ``batch`` in one transaction, which also deletes
        the wake-up rows of the requests it settled or leased (:func:`consumed_rows`).

        May raise asyncpg errors (deadlock, connection loss): nothing was changed then (the
        wake-up rows included) and the caller retries the batch later.
        """
        endpoint_ids = sorted({p.message.endpoint_id for p in batch})
        await self._ensure_health_rows(endpoint_ids)
        async with acquire_settled(self._pool) as conn:
            try:
                await conn.execute(_BEGIN_SQL)
                result = await self._decide(conn, batch, endpoint_ids)
                result.consumed_outbox_ids = consumed_rows(batch, result.deferred)
                await conn.execute(commit_sql(result.consumed_outbox_ids))
            except BaseException:
                await _rollback(conn)
                raise
        return result

    async def _decide(self, conn: asyncpg.Connection, batch: Sequence[Pending],
                      endpoint_ids: list[str]) -> ClaimResult:
        """Inside the open transaction: lock, read, plan and carry out (all but the commit)."""
        health_rows = await conn.fetch(_LOCK_HEALTH_SQL, endpoint_ids)
        delivery_ids = [p.message.delivery_id for p in batch]
        read_started = time.monotonic()
        rows = await conn.fetch(_ROWS_SQL, delivery_ids, min(delivery_ids, default=""),
                                max(delivery_ids, default=""))
        if not rows:
            return ClaimResult(settled=[(p, "unknown") for p in batch])
        now: datetime = rows[0]["now"]
        # the database's now lies between these two readings of this process's clock
        local_now = (read_started, time.monotonic())
        leased = {r["endpoint_id"]: r["n"] for r in
                  await conn.fetch(_LEASED_SQL, endpoint_ids, now)}
        slots = {r["endpoint_id"]: _slot(r, leased.get(r["endpoint_id"], 0))
                 for r in health_rows}
        by_id = {r["id"]: _row(r) for r in rows}
        actions = plan_claims(batch, by_id, slots, now, self._cfg, self._rng)
        result = await self._apply(conn, batch, actions, slots, now, local_now)
        for row in by_id.values():
            result.endpoint_limits[row.endpoint_id] = (row.max_in_flight, row.rate_limit_per_s)
        for endpoint_id, slot in slots.items():
            result.circuits[endpoint_id] = circuit_state(slot.health, now)
            result.endpoint_leases[endpoint_id] = slot.leased
        return result

    async def _apply(self, conn: asyncpg.Connection, batch: Sequence[Pending],
                     actions: list[Action], slots: dict[str, EndpointSlot],
                     now: datetime, local_now: tuple[float, float]) -> ClaimResult:
        result = ClaimResult()
        sorted_actions = _Sorted()
        for req, action in zip(batch, actions, strict=True):
            sorted_actions.add(req, action, result)
        parks = sorted_actions.parks
        if parks:
            ids = sorted(parks)
            await conn.execute(_PARK_SQL, ids, [parks[i] for i in ids])
        if sorted_actions.cancels:
            await conn.execute(_CANCEL_SQL, sorted(sorted_actions.cancels))
        result.messages = await kill_deliveries(conn, sorted_actions.kills, "endpoint_disabled")
        result.messages += await self._release_successors(conn, sorted_actions.kills)
        changed = sorted(e for e, s in slots.items() if s.changed)
        if changed:
            await conn.execute(_SAVE_SLOTS_SQL, changed, [slots[e].probe_until for e in changed],
                               [slots[e].rate_next_free_at for e in changed])
        if sorted_actions.claims:
            await self._lease(conn, sorted_actions.claims, now, local_now, result)
        result.outbox_ids = await insert_outbox(conn, result.messages)
        return result

    @staticmethod
    async def _release_successors(conn: asyncpg.Connection,
                                  killed: Sequence[str]) -> list[Message]:
        """A keyed head dead-lettered here (endpoint disabled) ends its turn like one that
        died after an attempt: the next open delivery of its key is announced now, not when
        the sweeper's stale window finds it."""
        if not killed:
            return []
        rows = await conn.fetch(_KILLED_KEYS_SQL, sorted(set(killed)))
        return await release_next_in_keys(conn, {(r["endpoint_id"], r["ordering_key"])
                                                 for r in rows})

    async def _lease(self, conn: asyncpg.Connection, claims: dict[str, tuple[Pending, Claim]],
                     now: datetime, local_now: tuple[float, float],
                     result: ClaimResult) -> None:
        """Lease the claimed deliveries; each one's send window (:func:`send_window`) maps
        its slot onto this process's clock through ``local_now``, the readings taken around
        the read of the database's ``now``."""
        ids = sorted(claims)
        rows = await conn.fetch(_CLAIM_SQL, self._owner, ids,
                                [claims[i][1].lease_until for i in ids], ids[0], ids[-1])
        got = {r["id"]: r for r in rows}
        for delivery_id in ids:
            if delivery_id not in got:
                result.settled.append((claims[delivery_id][0], "skipped_race"))
        for delivery_id, row in got.items():
            req, claim = claims[delivery_id]
            try:
                secrets = active_secrets(row["secret"], row["previous_secret"],
                                         row["previous_secret_expires_at"], now)
            except ValueError:
                log.error("endpoint secret is malformed; delivery left for later",
                          extra={"pw": {"delivery_id": delivery_id,
                                        "endpoint_id": req.message.endpoint_id}})
                result.settled.append((req, "skipped_bad_secret"))
                continue
            window = send_window(*local_now, (claim.send_at - now).total_seconds(),
                                 claim.rate_limited)
            result.claimed.append(Claimed(
                pending=req, delivery_id=delivery_id, event_id=row["event_id"],
                endpoint_id=req.message.endpoint_id, account_id=row["account_id"],
                event_type=row["type"], ordering_key=row["ordering_key"], url=row["url"],
                secrets=tuple(secrets), body=bytes(row["body"]),
                event_created_at=row["created_at"], attempt_count=row["attempt_count"],
                round_attempt_count=row["round_attempt_count"],
                send_at_s=window.not_before, probe=claim.probe, send_by_s=window.not_after,
            ))


async def _rollback(conn: asyncpg.Connection) -> None:
    """End a failed claim's transaction. Best effort: on a connection that is broken or still
    busy with an interrupted statement this fails too, and the pool's release then probes,
    rolls back or terminates it."""
    if conn.is_closed() or not conn.is_in_transaction():
        return
    try:
        await conn.execute("ROLLBACK", timeout=5)
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as exc:
        log.info("rolling back a failed claim failed (%s); the pool discards the connection",
                 exc)
