"""Replay of one event's deliveries (``POST /admin/v1/events/{id}/replay``).

One transaction holds everything: the Idempotency-Key claim, the conditional requeue and its
outbox messages (:mod:`requeue`), the ``replay_jobs`` row (kind ``event``, already completed,
so ``GET /admin/v1/replays/{id}`` shows its counts too), the audit row and the stored response.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from services.dlq_replay.audit import ACTION_EVENT_REPLAY, write_audit
from services.dlq_replay.idempotency import IdempotencyInput, claim_key, store_response
from services.dlq_replay.requeue import QueueResult, queue_deliveries
from services.dlq_replay.schemas import EventReplayRequest
from shared.adapters.kafka.publisher import Message
from shared.core.errors import Conflict, InvalidRequest, NotFound
from shared.core.ids import new_id
from shared.core.retention import delivery_id_window
from shared.retention import horizon


@dataclass
class EventReplayResult:
    """The 202 body; ``replayed`` is True when it came from a stored Idempotency-Key response."""

    body: dict[str, Any]
    replayed: bool = False
    outbox_ids: list[int] = field(default_factory=list)
    messages: list[Message] = field(default_factory=list)


async def _target_ids(conn: asyncpg.Connection, event_id: str,
                      endpoint_ids: tuple[str, ...] | None) -> list[str]:
    """Deliveries of the event to consider: all of them, or those to ``endpoint_ids``.

    An event past retention cannot be replayed: purged, it is a 404 that says so; still
    stored but below the retention horizon (its day is being dropped), a 409.
    """
    if await conn.fetchval("SELECT 1 FROM events WHERE id = $1", event_id) is None:
        purged = await horizon.past_retention(conn, "event", event_id)
        if purged is not None:
            raise NotFound(f"{purged}; its dead letters can no longer be replayed",
                           param="event_id")
        raise NotFound(f"no event {event_id}", param="event_id")
    floor = await horizon.history_floor_ids(conn)
    if floor is not None and event_id < floor[0]:
        raise Conflict(f"event {event_id} is past retention and is being purged; it can no "
                       "longer be replayed", param="event_id")
    window = delivery_id_window(event_id)
    if window is None:
        raise NotFound(f"no event {event_id}", param="event_id")
    rows = await conn.fetch(
        "SELECT id, endpoint_id FROM deliveries WHERE event_id = $1 AND id >= $2 AND id < $3"
        " ORDER BY id", event_id, *window)
    if endpoint_ids is None:
        return [r["id"] for r in rows]
    known = {r["endpoint_id"] for r in rows}
    missing = [e for e in endpoint_ids if e not in known]
    if missing:
        raise InvalidRequest(f"event {event_id} has no delivery to endpoint {missing[0]}",
                             param="endpoint_ids")
    wanted = set(endpoint_ids)
    return [r["id"] for r in rows if r["endpoint_id"] in wanted]


async def _record(conn: asyncpg.Connection, *, replay_id: str, operator: str, event_id: str,
                  request: EventReplayRequest, result: QueueResult) -> None:
    outcomes = Counter(o.outcome for o in result.outcomes)
    scope: dict[str, Any] = {"event_id": event_id, "include_succeeded": request.include_succeeded}
    if request.endpoint_ids is not None:
        scope["endpoint_ids"] = list(request.endpoint_ids)
    await conn.execute(
        "INSERT INTO replay_jobs (id, kind, status, reason, created_by, filter, matched, queued,"
        " skipped, finished_at) VALUES ($1, 'event', 'completed', $2, $3, $4, $5, $6, $7, now())",
        replay_id, request.reason, operator, scope, len(result.outcomes), result.queued,
        len(result.outcomes) - result.queued)
    await write_audit(conn, operator=operator, action=ACTION_EVENT_REPLAY, target=event_id,
                      reason=request.reason, details={
                          **scope, "replay_id": replay_id, "outcomes": dict(outcomes),
                          "deliveries": [o.to_json() for o in result.outcomes]})


async def replay_event(conn: asyncpg.Connection, *, operator: str, event_id: str,
                       request: EventReplayRequest,
                       idempotency: IdempotencyInput | None) -> EventReplayResult:
    """Run the replay inside the caller's transaction (retry the whole call on a deadlock).

    Raises NotFound for an unknown event, InvalidRequest for an ``endpoint_ids`` entry the
    event has no delivery to, IdempotencyConflict for a reused key (see :mod:`idempotency`).
    """
    if idempotency is not None:
        stored = await claim_key(conn, operator=operator, key=idempotency.key,
                                 request_hash=idempotency.request_hash,
                                 window_s=idempotency.window_s)
        if stored is not None:
            return EventReplayResult(stored.body, replayed=True)
    targets = await _target_ids(conn, event_id, request.endpoint_ids)
    result = await queue_deliveries(conn, targets, request.include_succeeded)
    replay_id = new_id("rpl")
    await _record(conn, replay_id=replay_id, operator=operator, event_id=event_id,
                  request=request, result=result)
    body = {"replay_id": replay_id, "deliveries": [o.to_json() for o in result.outcomes]}
    if idempotency is not None:
        await store_response(conn, operator=operator, key=idempotency.key, replay_id=replay_id,
                             response=body)
    return EventReplayResult(body, outbox_ids=result.outbox_ids, messages=result.messages)
