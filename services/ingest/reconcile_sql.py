"""SQL of producer reconciliation, on one dedicated connection per reconciliation.

The connection is the reconciliation's own (not the pool's): its temporary tables live as
long as it does, and closing it drops them. Every write runs in its own short autocommit
transaction (the upload in chunks of COPY), because a transaction that writes holds back the
merchant feed's horizon (``pg_snapshot_xmin``) for as long as it lasts; the answer is then
read in one read-only REPEATABLE READ transaction, which takes no transaction id.

Tables: ``reconcile_upload(id)`` (every normalised id as uploaded, duplicates included),
``reconcile_matched(id, event_id, delivery_count)`` (one row per distinct id and event it
matches, ``event_id`` NULL for an id never accepted), ``reconcile_issues`` (one row per
delivery of a matched event that has not succeeded).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from shared.core.reconcile import IdType

_SETUP = """
SET work_mem = '64MB';
SET temp_buffers = '64MB';
CREATE TEMP TABLE reconcile_upload (id text NOT NULL);
CREATE TEMP TABLE reconcile_matched (id text NOT NULL, event_id text, delivery_count integer);
CREATE TEMP TABLE reconcile_issues (
    id text NOT NULL, event_id text NOT NULL, delivery_id text NOT NULL,
    endpoint_id text NOT NULL, status text NOT NULL, attempt_count integer NOT NULL,
    last_attempt_at timestamptz, next_attempt_at timestamptz, last_status_code integer,
    last_error text, reason text, dead_at timestamptz);
"""

_WINDOW = ("($2::timestamptz IS NULL OR e.created_at >= $2)"
           " AND ($3::timestamptz IS NULL OR e.created_at < $3)")

_MATCH = {
    "idempotency_key": f"""
INSERT INTO reconcile_matched (id, event_id, delivery_count)
SELECT u.id, e.id, e.delivery_count
  FROM (SELECT DISTINCT id FROM reconcile_upload) u
  LEFT JOIN events e ON e.account_id = $1 AND e.idempotency_key = u.id AND {_WINDOW}
""",
    "event_id": f"""
INSERT INTO reconcile_matched (id, event_id, delivery_count)
SELECT u.id, e.id, e.delivery_count
  FROM (SELECT DISTINCT id FROM reconcile_upload) u
  LEFT JOIN events e ON e.id = u.id AND e.account_id = $1 AND {_WINDOW}
""",
}

_ISSUES = """
INSERT INTO reconcile_issues
SELECT m.id, d.event_id, d.id, d.endpoint_id, d.status, d.attempt_count, d.last_attempt_at,
       d.next_attempt_at, d.last_status_code, d.last_error,
       CASE d.status WHEN 'dead' THEN coalesce(dl.reason, 'unknown')
                     WHEN 'cancelled' THEN 'endpoint_deleted' END,
       dl.dead_at
  FROM reconcile_matched m
  JOIN deliveries d ON d.event_id = m.event_id
  LEFT JOIN dead_letters dl ON dl.delivery_id = d.id AND d.status = 'dead'
 WHERE m.event_id IS NOT NULL AND d.status <> 'succeeded'
"""

_SUMMARY = """
SELECT (SELECT count(*) FROM reconcile_upload) AS ids_received,
       m.ids_missing, m.ids_accepted, m.events_accepted, m.events_without_deliveries,
       m.deliveries,
       i.events_open, i.events_failed, i.deliveries_open, i.deliveries_dead,
       i.deliveries_cancelled
  FROM (SELECT count(*) FILTER (WHERE event_id IS NULL) AS ids_missing,
               count(DISTINCT id) FILTER (WHERE event_id IS NOT NULL) AS ids_accepted,
               count(event_id) AS events_accepted,
               count(*) FILTER (WHERE delivery_count = 0) AS events_without_deliveries,
               coalesce(sum(delivery_count), 0) AS deliveries
          FROM reconcile_matched) m,
       (SELECT count(DISTINCT event_id) FILTER (WHERE status IN ('pending', 'retrying'))
                   AS events_open,
               count(DISTINCT event_id) - count(DISTINCT event_id)
                   FILTER (WHERE status IN ('pending', 'retrying')) AS events_failed,
               count(*) FILTER (WHERE status IN ('pending', 'retrying')) AS deliveries_open,
               count(*) FILTER (WHERE status = 'dead') AS deliveries_dead,
               count(*) FILTER (WHERE status = 'cancelled') AS deliveries_cancelled
          FROM reconcile_issues) i
"""

_OPEN_BY_ENDPOINT = """
SELECT endpoint_id, count(*) AS n FROM reconcile_issues
 WHERE status IN ('pending', 'retrying') GROUP BY endpoint_id ORDER BY endpoint_id
"""

MISSING_SQL = "SELECT id FROM reconcile_matched WHERE event_id IS NULL ORDER BY id"
OPEN_SQL = """
SELECT * FROM reconcile_issues WHERE status IN ('pending', 'retrying')
 ORDER BY endpoint_id, delivery_id
"""
FAILED_SQL = """
SELECT * FROM reconcile_issues WHERE status IN ('dead', 'cancelled')
 ORDER BY endpoint_id, delivery_id
"""


@dataclass(frozen=True, slots=True)
class Summary:
    """The counts of one reconciliation (see :func:`summarise`)."""

    ids_received: int
    ids_missing: int
    ids_accepted: int
    events_accepted: int
    events_without_deliveries: int
    events_open: int
    events_failed: int
    deliveries: int
    deliveries_open: int
    deliveries_dead: int
    deliveries_cancelled: int
    open_by_endpoint: dict[str, int]

    @property
    def events_fully_delivered(self) -> int:
        """Accepted events with at least one delivery, every one of them succeeded."""
        return (self.events_accepted - self.events_without_deliveries - self.events_open
                - self.events_failed)

    @property
    def deliveries_succeeded(self) -> int:
        """Deliveries of the accepted events that succeeded (their fan-out minus the rest)."""
        return (self.deliveries - self.deliveries_open - self.deliveries_dead
                - self.deliveries_cancelled)


async def open_session(dsn: str) -> asyncpg.Connection:
    """A new connection with the three empty temporary tables. Raises asyncpg/OS errors."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(_SETUP)
    except BaseException:
        await conn.close()
        raise
    return conn


async def copy_ids(conn: asyncpg.Connection, copy_text: bytes) -> None:
    """Append ids in COPY text format (one escaped id per line) to ``reconcile_upload``, in
    one short transaction."""
    # a buffer (memoryview: bytes would be taken for a path), not a file object: for a file
    # asyncpg defines a reader class per call, a reference cycle that kept every chunk alive
    # until a full collection, so memory grew with the upload
    await conn.copy_to_table("reconcile_upload", source=memoryview(copy_text), columns=["id"],
                             format="text")


async def match(conn: asyncpg.Connection, id_type: IdType, account_id: str,
                since: datetime | None, until: datetime | None) -> None:
    """Fill ``reconcile_matched`` and ``reconcile_issues`` (two statements, each its own
    transaction). ``since`` is inclusive and ``until`` exclusive, on ``events.created_at``."""
    await conn.execute("ANALYZE reconcile_upload")
    await conn.execute(_MATCH[id_type], account_id, since, until)
    await conn.execute("ANALYZE reconcile_matched")
    await conn.execute(_ISSUES)


async def summarise(conn: asyncpg.Connection) -> Summary:
    """The counts over the three tables (call inside the read transaction)."""
    row = await conn.fetchrow(_SUMMARY)
    if row is None:  # cannot happen: an aggregate returns one row
        raise RuntimeError("the reconciliation summary returned no row")
    per_endpoint = {r["endpoint_id"]: int(r["n"]) for r in await conn.fetch(_OPEN_BY_ENDPOINT)}
    return Summary(**{k: int(v) for k, v in row.items()}, open_by_endpoint=per_endpoint)


async def stream(conn: asyncpg.Connection, query: str) -> AsyncIterator[asyncpg.Record]:
    """The rows of ``query`` through a server-side cursor (bounded memory); needs the caller's
    transaction."""
    async for row in conn.cursor(query, prefetch=2000):
        yield row
