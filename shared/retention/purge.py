"""One maintenance round: create partitions ahead, drop expired days, purge old rows.

:func:`run_round` needs a dedicated connection (not pooled, not in a transaction): it runs
``DETACH PARTITION ... CONCURRENTLY``. The caller makes sure only one round runs at a time
across every process (``loop.RetentionLoop`` holds an advisory lock). It may raise asyncpg
and OS errors; whatever it finished before stays done, and the next round resumes (an
interrupted detach is finalized, a detached table left behind is dropped).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import asyncpg

from shared.core.retention import (
    RetentionPolicy,
    Unit,
    account_cutoffs,
    audit_cutoff,
    day_start,
    dead_letter_cutoff,
    parse_partition_day,
    plan,
)
from shared.logging import fields
from shared.retention import horizon, partitions
from shared.retention.accounts import purge_account

log = logging.getLogger(__name__)

ROW_BATCH = 5000  # dead letters / audit rows deleted per statement (short transactions)
# Drop order inside a unit: what refers to something goes first.
_DROP_ORDER = ("attempts", "deliveries", "events")


@dataclass
class RoundReport:
    """What one round did. ``blocked``: unit label -> open deliveries that kept it."""

    created: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    blocked: dict[str, int] = field(default_factory=dict)
    dead_letters_deleted: int = 0
    account_events_deleted: int = 0  # by shorter per-account retention (row by row)
    audit_rows_deleted: int = 0
    drop_seconds: float = 0.0
    deferred: bool = False  # a lock wait ran past the lock timeout: dropping resumes next round


async def run_round(conn: asyncpg.Connection, policy: RetentionPolicy, now: datetime, *,
                    pause_s: float = 0.0) -> RoundReport:
    """Carry out :func:`shared.core.retention.plan` for ``now``.

    ``pause_s`` is slept after each partition dropped: every detach makes each connection
    re-plan its statements on the parent, so spacing the drops out spreads that cost thin
    instead of taking a bite out of the traffic (see bench/retention.py).

    A unit past retention is dropped only when no delivery it would remove is pending or
    retrying; the horizon moves first, so no replay can reopen one meanwhile. A blocked unit
    is kept (and reported) and tried again next round; newer units are still dropped.
    Partitions ahead are created first, so a drop that cannot get its locks (``deferred``)
    never holds up their creation.
    """
    report = RoundReport()
    cutover = await partitions.legacy_cutover(conn)
    steps = plan(policy, now, await partitions.attached_partitions(conn), cutover)
    for table, prefix, day in steps.create:
        if await partitions.create_partition(conn, table, prefix, day):
            report.created.append(f"{table}:{day.isoformat()}")
    try:
        await _drop_expired(conn, policy, now, pause_s, report)
    except asyncpg.LockNotAvailableError as exc:
        # a long transaction holds a lock (or an old snapshot) the detach must wait for:
        # give up until the next round rather than queue every query behind us
        report.deferred = True
        log.warning("retention: dropping deferred to the next round (%s)", exc)
    for account_id, cutoff in account_cutoffs(policy, now):
        report.account_events_deleted += await purge_account(conn, account_id, cutoff)
    report.dead_letters_deleted = await _purge_dead_letters(conn, policy, now)
    report.audit_rows_deleted = await _purge_audit(conn, policy, now)
    return report


async def _drop_expired(conn: asyncpg.Connection, policy: RetentionPolicy, now: datetime,
                        pause_s: float, report: RoundReport) -> None:
    await _finish_interrupted(conn, policy, now)
    cutover = await partitions.legacy_cutover(conn)
    steps = plan(policy, now, await partitions.attached_partitions(conn), cutover)
    for unit in steps.expired:
        await horizon.advance(conn, "events", unit.upper)
        still_open = await partitions.open_deliveries(conn, unit)
        if still_open:
            report.blocked[unit.label] = still_open
            log.warning("retention: %s is past retention but keeps %d open deliveries",
                        unit.label, still_open,
                        extra=fields(retention_day=unit.label, open_deliveries=still_open))
            continue
        report.drop_seconds += await _drop_unit(conn, unit, pause_s)
        report.dropped.append(unit.label)
        log.info("retention: dropped %s", unit.label, extra=fields(retention_day=unit.label))


async def _drop_unit(conn: asyncpg.Connection, unit: Unit, pause_s: float) -> float:
    """Drop the unit's partitions; returns the seconds spent detaching and dropping."""
    spent = 0.0
    for table in _DROP_ORDER:
        if table in unit.tables:
            started = time.perf_counter()
            await partitions.detach_and_drop(conn, table, unit.partition_of(table))
            spent += time.perf_counter() - started
            if pause_s > 0:
                await asyncio.sleep(pause_s)
    return spent


async def _finish_interrupted(conn: asyncpg.Connection, policy: RetentionPolicy,
                              now: datetime) -> None:
    """Complete what an earlier round left half done: detaches still pending are finalized
    and dropped; expired history tables detached but not dropped are dropped."""
    for parent, name in await partitions.detach_pending(conn):
        await partitions.detach_and_drop(conn, parent, name, finalize=True)
    cutoff = plan(policy, now, [], None).history_cutoff
    cutover = await partitions.legacy_cutover(conn)
    for name in await partitions.detached_leftovers(conn):
        parsed = parse_partition_day(name)
        if parsed is None:  # a legacy table
            expired = cutover is not None and cutover <= cutoff
        else:
            expired = day_start(parsed[1] + timedelta(days=1)) <= cutoff
        if expired:
            await partitions.drop_table(conn, name)


async def _purge_dead_letters(conn: asyncpg.Connection, policy: RetentionPolicy,
                              now: datetime) -> int:
    """Delete dead letters that died before their retention, in short batches."""
    cutoff = dead_letter_cutoff(policy, now)
    if cutoff is None:
        return 0
    await horizon.advance(conn, "dead_letters", cutoff)
    return await _delete_in_batches(
        conn, "DELETE FROM dead_letters WHERE delivery_id IN (SELECT delivery_id FROM dead_letters"
              " WHERE dead_at < $1 ORDER BY dead_at LIMIT $2)", cutoff)


async def _purge_audit(conn: asyncpg.Connection, policy: RetentionPolicy, now: datetime) -> int:
    """Delete audit rows older than their retention (default: never), oldest first, in short
    batches (ids grow with time, so the oldest ids are the old rows)."""
    cutoff = audit_cutoff(policy, now)
    if cutoff is None:
        return 0
    await horizon.advance(conn, "audit_log", cutoff)
    return await _delete_in_batches(
        conn, "DELETE FROM audit_log WHERE id IN (SELECT id FROM audit_log ORDER BY id LIMIT $2)"
              " AND at < $1", cutoff)


async def _delete_in_batches(conn: asyncpg.Connection, delete_sql: str, cutoff: datetime) -> int:
    """Run ``delete_sql`` (``$1`` the cutoff, ``$2`` the batch size) until a batch deletes
    fewer than ``ROW_BATCH`` rows; the number deleted. Each batch is its own short statement,
    so no lock is held for long."""
    deleted = 0
    while True:
        status = await conn.execute(delete_sql, cutoff, ROW_BATCH)
        count = int(status.split()[-1])
        deleted += count
        if count < ROW_BATCH:
            return deleted
