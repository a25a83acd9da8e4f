"""SQL of the merchant catch-up feed: an endpoint's deliveries in transaction order.

Position = ``(feed_txid, delivery id)``: the creating transaction's id (xid8), then the
delivery id. A page holds only rows whose transaction is older than every transaction still
running when the page is read (``pg_snapshot_xmin`` of the statement's snapshot): those
transactions have all ended, so their committed rows are visible now and no row can ever
appear at a position below the horizon later. Walking pages by position therefore returns each
delivery exactly once while events arrive; a page read while an ingest commit is in flight
simply stops before it (the next read picks it up).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

from shared.adapters.pg.where import Where

_ENDPOINT_SQL = """
SELECT id, secret, previous_secret, previous_secret_expires_at, deleted_at
  FROM endpoints WHERE id = $1
"""

_PAGE_SQL = """
SELECT d.feed_txid::text AS txid, d.id AS delivery_id, d.status, d.attempt_count,
       d.last_attempt_at, d.next_attempt_at, d.last_status_code,
       e.id AS event_id, e.type, e.created_at, e.body
  FROM deliveries d JOIN events e ON e.id = d.event_id
 {where}
 ORDER BY d.feed_txid, d.id
 LIMIT {limit}
"""


@dataclass(frozen=True, slots=True)
class FeedPosition:
    """A place in an endpoint's feed: after the delivery ``delivery_id`` of transaction
    ``txid`` (``txid`` 0 and an empty id: the start)."""

    txid: int
    delivery_id: str


START = FeedPosition(0, "")


async def fetch_endpoint(conn: asyncpg.Pool | asyncpg.Connection,
                         endpoint_id: str) -> asyncpg.Record | None:
    """The endpoint's secrets and ``deleted_at``, or None."""
    return await conn.fetchrow(_ENDPOINT_SQL, endpoint_id)


async def fetch_page(conn: asyncpg.Pool | asyncpg.Connection, endpoint_id: str,
                     after: FeedPosition, since: datetime | None,
                     limit: int) -> list[asyncpg.Record]:
    """Up to ``limit`` deliveries of the endpoint after ``after`` (created at or after
    ``since`` when given), below the horizon, in feed order."""
    where = Where()
    where.add("d.endpoint_id = {}", endpoint_id)
    where.fixed(f"(d.feed_txid, d.id) > ({where.param(str(after.txid))}::text::xid8,"
                f" {where.param(after.delivery_id)}::text)")
    where.fixed("d.feed_txid < pg_snapshot_xmin(pg_current_snapshot())")
    where.when("d.created_at >= {}", since)
    sql = _PAGE_SQL.format(where=where.sql(), limit=where.param(limit))
    return list(await conn.fetch(sql, *where.args))
