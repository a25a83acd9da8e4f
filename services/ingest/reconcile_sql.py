"""SQL of producer reconciliation, on one dedicated connection per reconciliation.

The connection is the reconciliation's own (not the pool's): its temporary tables live as
long as it does, and closing it drops them. Every write runs in its own short autocommit
transaction (the upload in chunks of COPY), because a transaction that writes holds back the
merchant feed's horizon (``pg_snapshot_xmin``) for as long as it lasts; the answer is then
read in one read-only REPEATABLE READ transaction, which takes no transaction id.

Tables: ``reconcile_upload(id)`` (every normalised id as uploaded, duplicates included) and
``reconcile_found``: one row per distinct id never accepted (``event_id`` NULL) and one per
delivery of a matched event that has not succeeded (open, dead or cancelled); the ids whose
every delivery succeeded are only counted.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from shared.adapters.pg.where import Where
from shared.core import delivery_status
from shared.core.reconcile import IdType

_SETUP = """
SET work_mem = '128MB';
SET temp_buffers = '64MB';
CREATE TEMP TABLE reconcile_upload (id text NOT NULL);
CREATE TEMP TABLE reconcile_found (
    id text NOT NULL, event_id text, delivery_count integer, delivery_id text,
    endpoint_id text, status text, attempt_count integer, last_attempt_at timestamptz,
    next_attempt_at timestamptz, last_status_code integer, last_error text, reason text,
    dead_at timestamptz);
"""

_ID_MATCH: dict[IdType, str] = {
    "idempotency_key": "e.idempotency_key = u.id",
    "event_id": "e.id = u.id",
}


def _event_join(id_type: IdType, account_id: str, since: datetime | None,
                until: datetime | None) -> Where:
    """The join condition of an uploaded id to its event: the account's, matched on
    ``id_type``, accepted in ``[since, until)``; an open end adds no condition."""
    on = Where()
    on.add("e.account_id = {}", account_id)
    on.fixed(_ID_MATCH[id_type])
    on.when("e.created_at >= {}", since)
    on.when("e.created_at < {}", until)
    return on

# One pass over the distinct uploaded ids: each joined to its events and to those events'
# deliveries that have not succeeded (a small set, hashed). What needs answering (ids never
# accepted, deliveries open, dead or cancelled) goes to reconcile_found; the rest is only
# counted. The succeeded deliveries of millions of events are never read row by row.
_MATCH = """
WITH x AS MATERIALIZED (
    SELECT u.id, e.id AS event_id, e.delivery_count, d.id AS delivery_id, d.endpoint_id,
           d.status, d.attempt_count, d.last_attempt_at, d.next_attempt_at,
           d.last_status_code, d.last_error
      FROM (SELECT DISTINCT id FROM reconcile_upload) u
      LEFT JOIN events e ON {join}
      LEFT JOIN deliveries d ON d.event_id = e.id AND d.status <> 'succeeded'
), found AS (
    INSERT INTO reconcile_found
    SELECT x.id, x.event_id, x.delivery_count, x.delivery_id, x.endpoint_id, x.status,
           x.attempt_count, x.last_attempt_at, x.next_attempt_at, x.last_status_code,
           x.last_error,
           CASE x.status WHEN 'dead' THEN coalesce(dl.reason, 'unknown')
                         WHEN 'cancelled' THEN 'endpoint_deleted' END,
           dl.dead_at
      FROM x LEFT JOIN dead_letters dl ON dl.delivery_id = x.delivery_id AND x.status = 'dead'
     WHERE x.event_id IS NULL OR x.delivery_id IS NOT NULL
)
SELECT count(*) FILTER (WHERE event_id IS NULL) AS ids_missing,
       count(*) FILTER (WHERE event_id IS NOT NULL AND delivery_id IS NULL) AS events_clean,
       count(*) FILTER (WHERE event_id IS NOT NULL AND delivery_id IS NULL
                          AND delivery_count = 0) AS events_without_deliveries,
       coalesce(sum(delivery_count) FILTER (WHERE event_id IS NOT NULL
                                              AND delivery_id IS NULL), 0) AS deliveries_clean
  FROM x
"""

_FOUND_SUMMARY = f"""
SELECT count(DISTINCT event_id) AS events_with_issues,
       count(DISTINCT event_id) FILTER (WHERE status IN {delivery_status.OPEN_SQL}) AS events_open,
       count(*) FILTER (WHERE status IN {delivery_status.OPEN_SQL}) AS deliveries_open,
       count(*) FILTER (WHERE status = 'dead') AS deliveries_dead,
       count(*) FILTER (WHERE status = 'cancelled') AS deliveries_cancelled,
       (SELECT coalesce(sum(delivery_count), 0) FROM (
            SELECT DISTINCT event_id, delivery_count FROM reconcile_found
             WHERE delivery_id IS NOT NULL) per_event) AS deliveries_with_issues
  FROM reconcile_found WHERE delivery_id IS NOT NULL
"""

_OPEN_BY_ENDPOINT = f"""
SELECT endpoint_id, count(*) AS n FROM reconcile_found
 WHERE status IN {delivery_status.OPEN_SQL} GROUP BY endpoint_id ORDER BY endpoint_id
"""

MISSING_SQL = "SELECT id FROM reconcile_found WHERE event_id IS NULL ORDER BY id"
OPEN_SQL = f"""
SELECT * FROM reconcile_found WHERE status IN {delivery_status.OPEN_SQL}
 ORDER BY endpoint_id, delivery_id
"""
FAILED_SQL = """
SELECT * FROM reconcile_found WHERE status IN ('dead', 'cancelled')
 ORDER BY endpoint_id, delivery_id
"""


@dataclass(frozen=True, slots=True)
class Matched:
    """The counts of the big pass (:func:`match`)."""

    ids_missing: int
    events_clean: int               # accepted, no delivery open, dead or cancelled
    events_without_deliveries: int  # ...of which matched no endpoint
    deliveries_clean: int           # the deliveries of the clean events (all succeeded)


@dataclass(frozen=True, slots=True)
class Summary:
    """The counts of one reconciliation (see :func:`summarise`)."""

    ids_received: int
    ids_missing: int
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
                since: datetime | None, until: datetime | None) -> Matched:
    """Compare the upload with the events of ``account_id`` accepted in ``[since, until)``
    (either end open when None; on ``events.created_at``) in one statement, filling
    ``reconcile_found``."""
    await conn.execute("ANALYZE reconcile_upload")
    on = _event_join(id_type, account_id, since, until)
    row = await conn.fetchrow(_MATCH.format(join=on.joined()), *on.args)
    if row is None:  # cannot happen: an aggregate returns one row
        raise RuntimeError("the reconciliation match returned no row")
    return Matched(**{k: int(v) for k, v in row.items()})


async def summarise(conn: asyncpg.Connection, matched: Matched, ids_received: int) -> Summary:
    """The answer's counts: ``matched`` plus the small ``reconcile_found`` table."""
    row = await conn.fetchrow(_FOUND_SUMMARY)
    if row is None:  # cannot happen: an aggregate returns one row
        raise RuntimeError("the reconciliation summary returned no row")
    per_endpoint = {r["endpoint_id"]: int(r["n"]) for r in await conn.fetch(_OPEN_BY_ENDPOINT)}
    with_issues = int(row["events_with_issues"])
    events_open = int(row["events_open"])
    return Summary(
        ids_received=ids_received, ids_missing=matched.ids_missing,
        events_accepted=matched.events_clean + with_issues,
        events_without_deliveries=matched.events_without_deliveries,
        events_open=events_open, events_failed=with_issues - events_open,
        deliveries=matched.deliveries_clean + int(row["deliveries_with_issues"]),
        deliveries_open=int(row["deliveries_open"]), deliveries_dead=int(row["deliveries_dead"]),
        deliveries_cancelled=int(row["deliveries_cancelled"]), open_by_endpoint=per_endpoint)


async def stream(conn: asyncpg.Connection, query: str) -> AsyncIterator[asyncpg.Record]:
    """The rows of ``query`` through a server-side cursor (bounded memory); needs the caller's
    transaction."""
    async for row in conn.cursor(query, prefetch=2000):
        yield row
