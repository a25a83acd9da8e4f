"""Replay jobs in Postgres: creating a bulk job, reading and cancelling jobs, and the worker's
lease and step.

A bulk job snapshots the matching dead deliveries into ``replay_job_items`` (positions
1..matched, delivery id order = acceptance order) in the transaction that creates it, so
``matched`` never changes and the walk order is stable. Each :func:`run_step` is one
transaction that locks the job row, checks the caller still holds the lease and the job still
runs, requeues the next items and advances ``position``/``queued``/``skipped`` together: a
process killed at any moment resumes exactly after the last committed step.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from services.dlq_replay.audit import ACTION_BULK_CANCEL, ACTION_BULK_START, write_audit
from services.dlq_replay.requeue import DeliveryOutcome, queue_deliveries
from services.dlq_replay.schemas import BulkReplayRequest
from shared.adapters.kafka.publisher import Message
from shared.adapters.pg.where import Where
from shared.core.errors import Conflict, NotFound
from shared.core.ids import new_id
from shared.core.timefmt import format_ts

_JOB_COLUMNS = ("id, kind, status, reason, created_by, filter, max_per_second, matched, queued,"
                " skipped, position, last_error, created_at, updated_at, finished_at")


def job_json(row: Mapping[str, Any]) -> dict[str, Any]:
    """A replay job as the API shows it (contract fields first, then extensions)."""
    return {
        "id": row["id"], "status": row["status"], "matched": row["matched"],
        "queued": row["queued"], "skipped": row["skipped"], "created_by": row["created_by"],
        "reason": row["reason"], "kind": row["kind"], "filter": row["filter"],
        "max_per_second": row["max_per_second"], "error": row["last_error"],
        "created_at": format_ts(row["created_at"]), "updated_at": format_ts(row["updated_at"]),
        "finished_at": format_ts(row["finished_at"]),
    }


def _match_sql(job_id: str, request: BulkReplayRequest) -> tuple[str, list[Any]]:
    """INSERT of the job's items: dead deliveries whose dead letter matches, in id order."""
    where = Where(args=[job_id])  # $1 is the job id
    where.fixed("d.status = 'dead'")
    flt = request.filter
    where.eq("dl.endpoint_id", flt.endpoint_id)
    where.eq("dl.account_id", flt.account_id)
    where.eq("dl.type", flt.type)
    if flt.since is not None:
        where.add("dl.dead_at >= {}", flt.since)
    if flt.until is not None:
        where.add("dl.dead_at < {}", flt.until)
    sql = ("INSERT INTO replay_job_items (job_id, position, delivery_id)"
           " SELECT $1, row_number() OVER (ORDER BY d.id), d.id FROM dead_letters dl"
           f" JOIN deliveries d ON d.id = dl.delivery_id {where.sql()}")
    return sql, where.args


async def create_bulk_job(conn: asyncpg.Connection, *, operator: str,
                          request: BulkReplayRequest) -> dict[str, Any]:
    """Create the job, snapshot its matches and audit it, in the caller's transaction.

    Every job starts ``running`` (the contract's 202), even one that matched nothing: the
    worker's first step completes it. Returns the job row as JSON.
    """
    job_id = new_id("rpl")
    await conn.execute(
        "INSERT INTO replay_jobs (id, kind, status, reason, created_by, filter, max_per_second)"
        " VALUES ($1, 'bulk', 'running', $2, $3, $4, $5)",
        job_id, request.reason, operator, request.filter.to_json(), request.max_per_second)
    sql, args = _match_sql(job_id, request)
    matched = int((await conn.execute(sql, *args)).split()[-1])
    row = await conn.fetchrow(
        f"UPDATE replay_jobs SET matched = $2 WHERE id = $1 RETURNING {_JOB_COLUMNS}",
        job_id, matched)
    await write_audit(conn, operator=operator, action=ACTION_BULK_START, target=job_id,
                      reason=request.reason, details={
                          "filter": request.filter.to_json(), "matched": matched,
                          "max_per_second": request.max_per_second})
    return job_json(row)


async def get_job(pool: asyncpg.Pool, job_id: str) -> dict[str, Any]:
    """The job as JSON; NotFound if unknown."""
    row = await pool.fetchrow(f"SELECT {_JOB_COLUMNS} FROM replay_jobs WHERE id = $1", job_id)
    if row is None:
        raise NotFound(f"no replay {job_id}", param="id")
    return job_json(row)


async def cancel_job(conn: asyncpg.Connection, *, operator: str, job_id: str,
                     reason: str | None) -> tuple[dict[str, Any], bool]:
    """Cancel a running bulk job (audited); returns (job, changed).

    Cancelling a cancelled job changes nothing and is not audited. Raises NotFound if unknown
    and Conflict when the job already completed or failed (or is a single-event replay).
    Waits for a worker step in progress (row lock), so nothing is queued after it returns.
    """
    row = await conn.fetchrow(
        f"SELECT {_JOB_COLUMNS} FROM replay_jobs WHERE id = $1 FOR UPDATE", job_id)
    if row is None:
        raise NotFound(f"no replay {job_id}", param="id")
    if row["status"] == "cancelled":
        return job_json(row), False
    if row["status"] != "running":
        raise Conflict(f"replay {job_id} is already {row['status']}; nothing to cancel")
    row = await conn.fetchrow(
        f"UPDATE replay_jobs SET status = 'cancelled', finished_at = now(), updated_at = now(),"
        f" lease_owner = NULL, lease_until = NULL WHERE id = $1 RETURNING {_JOB_COLUMNS}", job_id)
    await write_audit(conn, operator=operator, action=ACTION_BULK_CANCEL, target=job_id,
                      reason=reason, details={"matched": row["matched"], "queued": row["queued"],
                                              "skipped": row["skipped"]})
    return job_json(row), True


@dataclass(frozen=True)
class ClaimedJob:
    """A bulk job this worker now holds the lease of."""

    id: str
    max_per_second: int


async def claim_job(pool: asyncpg.Pool, *, owner: str, lease_s: float,
                    exclude: list[str]) -> ClaimedJob | None:
    """Take the lease of the oldest running bulk job nobody holds (SKIP LOCKED), if any."""
    row = await pool.fetchrow(
        "UPDATE replay_jobs SET lease_owner = $1, lease_until = now() + make_interval(secs => $2)"
        " WHERE id = (SELECT id FROM replay_jobs WHERE status = 'running' AND kind = 'bulk'"
        "  AND (lease_until IS NULL OR lease_until < now()) AND NOT (id = ANY($3::text[]))"
        "  ORDER BY created_at LIMIT 1 FOR UPDATE SKIP LOCKED)"
        " RETURNING id, max_per_second", owner, lease_s, exclude)
    return None if row is None else ClaimedJob(row["id"], row["max_per_second"])


async def release_jobs(pool: asyncpg.Pool, owner: str) -> None:
    """Give up every lease ``owner`` holds, so another process resumes the jobs at once."""
    await pool.execute(
        "UPDATE replay_jobs SET lease_owner = NULL, lease_until = NULL"
        " WHERE lease_owner = $1 AND status = 'running'", owner)


@dataclass
class StepResult:
    """One committed step; ``running`` False means stop walking (done, cancelled, lease lost)."""

    running: bool
    outcomes: list[DeliveryOutcome] = field(default_factory=list)
    outbox_ids: list[int] = field(default_factory=list)
    messages: list[Message] = field(default_factory=list)


async def run_step(conn: asyncpg.Connection, *, job_id: str, owner: str, lease_s: float,
                   batch: int) -> StepResult:
    """Requeue the next ``batch`` items of the job, inside the caller's transaction."""
    job = await conn.fetchrow(
        "SELECT status, position, matched, lease_owner FROM replay_jobs WHERE id = $1 FOR UPDATE",
        job_id)
    if job is None or job["status"] != "running" or job["lease_owner"] != owner:
        return StepResult(running=False)
    items = await conn.fetch(
        "SELECT position, delivery_id FROM replay_job_items WHERE job_id = $1 AND position > $2"
        " ORDER BY position LIMIT $3", job_id, job["position"], batch)
    result = await queue_deliveries(conn, [i["delivery_id"] for i in items], False)
    queued = result.queued
    last = items[-1]["position"] if items else job["position"]
    done = last >= job["matched"]
    await conn.execute(
        "UPDATE replay_jobs SET position = $2, queued = queued + $3, skipped = skipped + $4,"
        " updated_at = now(), lease_until = now() + make_interval(secs => $5),"
        " status = CASE WHEN $6 THEN 'completed' ELSE status END,"
        " finished_at = CASE WHEN $6 THEN now() END,"
        " lease_owner = CASE WHEN $6 THEN NULL ELSE lease_owner END WHERE id = $1",
        job_id, last, queued, len(items) - queued, lease_s, done)
    return StepResult(not done, result.outcomes, result.outbox_ids, result.messages)


async def fail_job(pool: asyncpg.Pool, *, job_id: str, owner: str, error: str) -> None:
    """Mark a job ``failed`` with ``error`` if ``owner`` still holds it running."""
    await pool.execute(
        "UPDATE replay_jobs SET status = 'failed', last_error = $3, finished_at = now(),"
        " updated_at = now(), lease_owner = NULL, lease_until = NULL"
        " WHERE id = $1 AND lease_owner = $2 AND status = 'running'", job_id, owner, error[:1000])
