"""The one place where a replay changes a delivery: a conditional requeue inside a transaction.

Safety is structural. Within the caller's transaction the deliveries are locked in id order,
classified (:func:`policy.classify`), and the ones to queue are moved back to ``pending`` by an
UPDATE whose WHERE clause repeats the status condition, with ``generation + 1``; the
dead letter's ``replay_count`` grows and a ``deliveries`` outbox message carrying the new
generation is written. All of it commits or none of it does, so two concurrent replays (or a
replay racing the dispatcher's own retry) queue a delivery at most once: the loser sees
``pending``/``retrying`` and reports ``already_pending``. A message of an older generation
that is still in flight is skipped by the dispatcher.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import asyncpg

from services.dlq_replay.policy import DeliveryState, Outcome, classify, replayable_statuses
from shared.adapters.kafka.publisher import Message
from shared.adapters.pg.announce import announce
from shared.retention import horizon


@dataclass(frozen=True)
class DeliveryOutcome:
    """What a replay did to one delivery; ``replay_count`` counts replays including this one."""

    delivery_id: str
    endpoint_id: str
    outcome: Outcome
    replay_count: int | None = None

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {"delivery_id": self.delivery_id,
                                  "endpoint_id": self.endpoint_id, "outcome": self.outcome}
        if self.replay_count is not None:
            out["replay_count"] = self.replay_count
        return out


@dataclass
class QueueResult:
    """Outcomes in delivery id order, plus the outbox rows to publish after commit."""

    outcomes: list[DeliveryOutcome] = field(default_factory=list)
    outbox_ids: list[int] = field(default_factory=list)
    messages: list[Message] = field(default_factory=list)

    @property
    def queued(self) -> int:
        return sum(1 for o in self.outcomes if o.outcome == "queued")


_LOCK_SQL = """
SELECT d.id, d.endpoint_id, d.status, e.enabled, e.deleted_at IS NOT NULL AS deleted
FROM deliveries d JOIN endpoints e ON e.id = d.endpoint_id
WHERE d.id = ANY($1::text[])
ORDER BY d.id
FOR UPDATE OF d
"""

_REQUEUE_SQL = """
UPDATE deliveries
SET status = 'pending', generation = generation + 1, round_attempt_count = 0,
    next_attempt_at = now(), published_at = now(), lease_owner = NULL, lease_until = NULL,
    updated_at = now()
WHERE id = ANY($1::text[]) AND status = ANY($2::text[])
RETURNING id, event_id, endpoint_id, account_id, ordering_key, sequence, generation
"""

# Deliveries below the retention horizon (or whose event is): their day is being dropped, so
# they are treated as gone and never requeued (a requeued one would keep its day forever).
_PAST_RETENTION_SQL = """
SELECT id FROM deliveries WHERE id = ANY($1::text[]) AND (id < $2 OR event_id < $3)
"""

_COUNT_SQL = """
UPDATE dead_letters SET replay_count = replay_count + 1
WHERE delivery_id = ANY($1::text[])
RETURNING delivery_id, replay_count
"""


async def lock_states(conn: asyncpg.Connection, delivery_ids: Sequence[str]) -> list[DeliveryState]:
    """Lock the deliveries (FOR UPDATE, id order: no deadlock between replays) and read them.

    Must run inside a transaction; unknown ids are simply absent from the result.
    """
    rows = await conn.fetch(_LOCK_SQL, sorted(set(delivery_ids)))
    return [DeliveryState(r["id"], r["endpoint_id"], r["status"], r["enabled"], r["deleted"])
            for r in rows]


async def queue_deliveries(conn: asyncpg.Connection, delivery_ids: Sequence[str],
                           include_succeeded: bool) -> QueueResult:
    """Requeue every replayable delivery among ``delivery_ids``; report each one's outcome.

    Deliveries past the retention horizon count as unknown (absent from the outcomes); the
    horizon is share-locked, so a purge cannot start dropping their day meanwhile.
    Must run inside the caller's transaction (which also writes the audit row). The outbox rows
    it inserts are published by the caller after commit (``OutboxFlusher.submit``), or by the
    relay. May raise asyncpg errors (deadlocks included: retry the whole transaction).
    """
    floor = await horizon.history_floor_ids(conn)
    states = await lock_states(conn, delivery_ids)
    if floor is not None:
        expired = {r["id"] for r in await conn.fetch(_PAST_RETENTION_SQL, list(delivery_ids),
                                                     floor[1], floor[0])}
        states = [s for s in states if s.delivery_id not in expired]
    planned = {s.delivery_id: classify(s, include_succeeded) for s in states}
    wanted = [d for d, outcome in planned.items() if outcome == "queued"]
    result = QueueResult()
    counts: dict[str, int] = {}
    if wanted:
        rows = await conn.fetch(_REQUEUE_SQL, wanted, replayable_statuses(include_succeeded))
        requeued = {r["id"] for r in rows}
        for d in wanted:
            if d not in requeued:  # impossible under the row lock; never report a false queue
                planned[d] = "already_pending"
        counts = {r["delivery_id"]: r["replay_count"]
                  for r in await conn.fetch(_COUNT_SQL, sorted(requeued))}
        result.messages, result.outbox_ids = await announce(
            conn, sorted(rows, key=lambda r: r["id"]))
    result.outcomes = [
        DeliveryOutcome(s.delivery_id, s.endpoint_id, planned[s.delivery_id],
                        counts.get(s.delivery_id) if planned[s.delivery_id] == "queued" else None)
        for s in states
    ]
    return result
