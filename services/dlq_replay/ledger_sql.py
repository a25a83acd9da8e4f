"""SQL of the ledger (:mod:`shared.core.ledger`): one statement, so one snapshot.

Events and their deliveries are committed by one ingest statement, and the ledger reads both in
one statement too, so an ingest commit can never fall between the two counts: a window that
does not balance is a real discrepancy, not a race.
"""

from __future__ import annotations

from datetime import datetime

import asyncpg

from shared.adapters.pg.where import Where
from shared.core.delivery_status import OPEN_SQL, STATUSES, DeliveryStatus
from shared.core.ledger import Ledger, OldestOpen, id_bounds

_DEAD = DeliveryStatus.DEAD.value
_BY_STATUS = ",\n           ".join(
    f"count(*) FILTER (WHERE d.status = '{status}') AS {status}" for status in STATUSES)


def _window(where: Where, alias: str, low: str | None, high: str | None,
            since: datetime | None, until: datetime | None) -> Where:
    """``where`` narrowed to the rows of ``alias`` in the window: ids in [low, high) (the
    partition and index bound), then created_at in [since, until); a None end adds nothing."""
    where.when(f"{alias}.id >= {{}}", low)
    where.when(f"{alias}.id < {{}}", high)
    where.when(f"{alias}.created_at >= {{}}", since)
    where.when(f"{alias}.created_at < {{}}", until)
    return where


def _ledger_statement(since: datetime | None, until: datetime | None) -> tuple[str, list[object]]:
    """The ledger statement of ``[since, until)`` and its arguments. Only the window's given
    ends become conditions, so each shape is planned with its own partition pruning."""
    dlv_low, dlv_high = id_bounds("dlv", since, until)
    evt_low, evt_high = id_bounds("evt", since, until)
    args: list[object] = []  # one numbering for the three WHERE clauses of the statement
    events = _window(Where(args=args), "e", evt_low, evt_high, since, until)
    deliveries = _window(Where(args=args), "d", dlv_low, dlv_high, since, until)
    open_ones = Where(args=args)
    open_ones.fixed(f"d.status IN {OPEN_SQL}")
    _window(open_ones, "d", dlv_low, dlv_high, since, until)
    sql = f"""
WITH ev AS (
    SELECT count(*) AS events, coalesce(sum(e.delivery_count), 0) AS created
      FROM events e
     {events.sql()}
), dl AS (
    SELECT {_BY_STATUS},
           count(*) FILTER (WHERE d.status = '{_DEAD}' AND NOT EXISTS (
               SELECT 1 FROM dead_letters x WHERE x.delivery_id = d.id)) AS dead_unrecorded
      FROM deliveries d
     {deliveries.sql()}
), oldest AS (
    SELECT d.id, d.event_id, d.endpoint_id, d.status, d.created_at
      FROM deliveries d
     {open_ones.sql()}
     ORDER BY d.created_at, d.id LIMIT 1
)
SELECT ev.*, dl.*, o.id AS oldest_id, o.event_id AS oldest_event_id,
       o.endpoint_id AS oldest_endpoint_id, o.status AS oldest_status,
       o.created_at AS oldest_created_at, now() AS as_of
  FROM ev, dl LEFT JOIN oldest o ON true
"""
    return sql, args


_OLDEST_OPEN_SQL = f"""
SELECT id, event_id, endpoint_id, status, created_at, now() AS as_of FROM deliveries
 WHERE status IN {OPEN_SQL} ORDER BY created_at, id LIMIT 1
"""


def _oldest(row: asyncpg.Record, prefix: str, as_of: datetime) -> OldestOpen | None:
    if row[f"{prefix}id"] is None:
        return None
    created: datetime = row[f"{prefix}created_at"]
    return OldestOpen(row[f"{prefix}id"], row[f"{prefix}event_id"],
                      row[f"{prefix}endpoint_id"], row[f"{prefix}status"], created,
                      max(0.0, (as_of - created).total_seconds()))


async def read_ledger(conn: asyncpg.Pool | asyncpg.Connection, since: datetime | None,
                      until: datetime | None) -> Ledger:
    """The ledger of ``[since, until)`` (either end open when None). Raises asyncpg errors."""
    sql, args = _ledger_statement(since, until)
    row = await conn.fetchrow(sql, *args)
    if row is None:  # cannot happen: aggregates return one row
        raise RuntimeError("the ledger query returned no row")
    as_of: datetime = row["as_of"]
    return Ledger(
        since=since, until=until, as_of=as_of, events_accepted=int(row["events"]),
        deliveries_created=int(row["created"]),
        by_status={s: int(row[s]) for s in STATUSES},
        dead_without_dead_letter=int(row["dead_unrecorded"]),
        oldest_open=_oldest(row, "oldest_", as_of))


async def oldest_open(conn: asyncpg.Pool | asyncpg.Connection) -> OldestOpen | None:
    """The oldest open delivery of all time (found through the open-deliveries indexes)."""
    row = await conn.fetchrow(_OLDEST_OPEN_SQL)
    return None if row is None else _oldest(row, "", row["as_of"])
