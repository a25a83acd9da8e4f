"""The admin service's mutating actions, shared by the admin API, the console and the portal.

Each runs in one transaction with its audit row, hands the outbox messages to the flusher only
after commit, counts the request in the metrics and logs it. The HTTP handlers
(:mod:`events_api`, :mod:`replays_api`) and the browser pages (:mod:`console`) only parse their
input differently; the effect, the audit row and the metrics are the same, under whichever
actor they pass (an operator name, or ``portal:<account>`` for the merchant portal).
"""

from __future__ import annotations

import logging
from typing import Any

import asyncpg

from services.dlq_replay.context import AdminContext
from services.dlq_replay.event_replay import EventReplayResult, replay_event
from services.dlq_replay.idempotency import IdempotencyInput, claim_key, store_response
from services.dlq_replay.jobs import cancel_job, create_bulk_job
from services.dlq_replay.schemas import BulkReplayRequest, EventReplayRequest
from shared.adapters.pg.txn import in_transaction
from shared.logging import fields

log = logging.getLogger(__name__)


async def run_event_replay(ctx: AdminContext, *, actor: str, event_id: str,
                           request: EventReplayRequest,
                           idempotency: IdempotencyInput | None = None) -> EventReplayResult:
    """Replay one event's deliveries (see :func:`event_replay.replay_event` for what it
    raises); ``result.replayed`` is True when a stored Idempotency-Key response came back."""

    async def work(conn: asyncpg.Connection) -> EventReplayResult:
        return await replay_event(conn, operator=actor, event_id=event_id, request=request,
                                  idempotency=idempotency)

    result = await in_transaction(ctx.pool, work)
    if result.replayed:
        ctx.metrics.replay_requests.labels("event", "idempotent_replayed").inc()
        return result
    ctx.flusher.submit(result.outbox_ids, result.messages)
    ctx.metrics.replay_requests.labels("event", "ok").inc()
    for item in result.body["deliveries"]:
        ctx.metrics.replay_outcomes.labels("event", item["outcome"]).inc()
    log.info("event replayed", extra=fields(
        event_id=event_id, replay_id=result.body["replay_id"], operator=actor))
    return result


async def run_bulk_start(ctx: AdminContext, *, actor: str, request: BulkReplayRequest,
                         idempotency: IdempotencyInput | None = None) -> tuple[dict[str, Any],
                                                                                bool]:
    """Create a bulk replay job (snapshot + audit) and wake the worker; returns the job and
    whether it came from a stored Idempotency-Key response."""

    async def work(conn: asyncpg.Connection) -> tuple[dict[str, Any], bool]:
        if idempotency is not None:
            stored = await claim_key(conn, operator=actor, key=idempotency.key,
                                     request_hash=idempotency.request_hash,
                                     window_s=idempotency.window_s)
            if stored is not None:
                return stored.body, True
        job = await create_bulk_job(conn, operator=actor, request=request)
        if idempotency is not None:
            await store_response(conn, operator=actor, key=idempotency.key, replay_id=job["id"],
                                 response=job)
        return job, False

    job, replayed = await in_transaction(ctx.pool, work)
    if replayed:
        ctx.metrics.replay_requests.labels("bulk", "idempotent_replayed").inc()
        return job, True
    ctx.worker.wake()
    ctx.metrics.replay_requests.labels("bulk", "ok").inc()
    log.info("bulk replay started", extra=fields(replay_id=job["id"], operator=actor))
    return job, False


async def run_cancel(ctx: AdminContext, *, actor: str, job_id: str,
                     reason: str | None) -> dict[str, Any]:
    """Cancel a running bulk replay (audited when it changed); returns the job.

    Raises NotFound / Conflict as :func:`jobs.cancel_job` does."""

    async def work(conn: asyncpg.Connection) -> tuple[dict[str, Any], bool]:
        return await cancel_job(conn, operator=actor, job_id=job_id, reason=reason)

    job, changed = await in_transaction(ctx.pool, work)
    if changed:
        ctx.metrics.replay_requests.labels("cancel", "ok").inc()
        log.info("bulk replay cancelled", extra=fields(replay_id=job_id, operator=actor))
    return job
