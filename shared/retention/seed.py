"""Synthetic history for tests, benchmarks and demos of retention; never used by the services.

:func:`seed_day` writes, in three statements, ``count`` events of one simulated UTC day with
one delivery each and one attempt per delivery, exactly as ingest and the dispatcher leave
them (ids whose ULID time lies in that day, so they land in that day's partitions).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import asyncpg

from shared.core.ids import lowest_id_at
from shared.core.retention import HISTORY_TABLES, day_start, partition_name
from shared.retention.partitions import create_partition

# n-th row of the day: its time is spread evenly over the day; its id is the ULID prefix of
# its minute (computed once per minute: 1,440 calls instead of one per row) followed by n
# (16 decimal digits are valid Crockford base32, and unique within the day).
_SERIES = """
WITH m AS (
    SELECT k, left(postwire_id_floor('evt', $1::timestamptz + k * interval '1 minute'), 14) AS evt,
              left(postwire_id_floor('dlv', $1::timestamptz + k * interval '1 minute'), 14) AS dlv,
              left(postwire_id_floor('att', $1::timestamptz + k * interval '1 minute'), 14) AS att
    FROM generate_series(0, 1439) AS k
), s AS (
    SELECT m.evt || t.tail AS event_id, m.dlv || t.tail AS delivery_id,
           m.att || t.tail AS attempt_id, t.at
    FROM (SELECT n, $1::timestamptz + (n * 86400.0 / $2) * interval '1 second' AS at,
                 (n::bigint * 1440 / $2)::int AS k, lpad(($6::bigint + n)::text, 16, '0') AS tail
          FROM generate_series(0, $2 - 1) AS n
          WHERE $3::text IS NOT NULL AND $4::text IS NOT NULL AND $5::text IS NOT NULL) t
    JOIN m ON m.k = t.k
)
"""

_EVENTS_SQL = _SERIES + """
INSERT INTO events (id, account_id, type, ordering_key, body, created_at, delivery_count)
SELECT event_id, $3, 'invoice.paid', NULL,
       convert_to('{"id":"' || event_id || '","type":"invoice.paid","data":{"amount":4200}}',
                  'UTF8'), at, 1
FROM s
"""

_DELIVERIES_SQL = _SERIES + """
INSERT INTO deliveries (id, event_id, endpoint_id, account_id, status, attempt_count,
                        round_attempt_count, last_attempt_at, last_status_code, created_at,
                        updated_at)
SELECT delivery_id, event_id, $4, $3, $5, 1, 1, at,
       CASE WHEN $5 = 'succeeded' THEN 200 ELSE 500 END, at, at
FROM s
"""

_ATTEMPTS_SQL = _SERIES + """
INSERT INTO attempts (id, delivery_id, attempt, started_at, duration_ms, status_code)
SELECT attempt_id, delivery_id, 1, at, 12, CASE WHEN $5 = 'succeeded' THEN 200 ELSE 500 END
FROM s
"""


@dataclass(frozen=True)
class SeededDay:
    """The ids of the first row seeded for a day (the others follow in id order)."""

    first_event_id: str
    first_delivery_id: str


async def ensure_day(conn: asyncpg.Connection, day: date) -> None:
    """Create the three partitions of ``day`` if they are missing (any day, past included)."""
    for table, prefix in HISTORY_TABLES:
        await create_partition(conn, table, prefix, day)


async def seed_day(conn: asyncpg.Connection, day: date, count: int, *, endpoint_id: str,
                   account_id: str, status: str = "succeeded", offset: int = 0) -> SeededDay:
    """Insert ``count`` events of ``day`` (each with one delivery in ``status`` and one attempt).
    ``offset`` shifts the id tails, so several calls for one day do not collide.

    A day without partitions yet is bulk-loaded: its tables are filled while detached and
    then attached, so their indexes are built once instead of row by row (about 3x faster).
    """
    start = day_start(day)
    args = (start, count, account_id, endpoint_id, status, offset)
    fresh = all([await conn.fetchval("SELECT to_regclass($1) IS NULL", partition_name(t, day))
                 for t, _ in HISTORY_TABLES])
    if not fresh:
        await ensure_day(conn, day)
    async with conn.transaction():
        if fresh:
            for table, _ in HISTORY_TABLES:
                await conn.execute(
                    f'CREATE TABLE "{partition_name(table, day)}" (LIKE "{table}"'
                    " INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING STORAGE)")
        for table, sql in (("events", _EVENTS_SQL), ("deliveries", _DELIVERIES_SQL),
                           ("attempts", _ATTEMPTS_SQL)):
            target = partition_name(table, day) if fresh else table
            await conn.execute(sql.replace(f"INSERT INTO {table} ", f'INSERT INTO "{target}" '),
                               *args)
        if fresh:
            for table, prefix in HISTORY_TABLES:
                low, high = _floor(prefix, day, 0), _floor(prefix, day, 1)
                await conn.execute(
                    f'ALTER TABLE "{table}" ATTACH PARTITION "{partition_name(table, day)}"'
                    f" FOR VALUES FROM ('{low}') TO ('{high}')")
    first = await conn.fetchrow(
        "SELECT left(postwire_id_floor('evt', $1), 14) || lpad($2::bigint::text, 16, '0') AS e,"
        " left(postwire_id_floor('dlv', $1), 14) || lpad($2::bigint::text, 16, '0') AS d",
        start, offset)
    if first is None:
        raise RuntimeError("seed_day: the id query returned no row")
    return SeededDay(first["e"], first["d"])


def _floor(prefix: str, day: date, plus_days: int) -> str:
    return lowest_id_at(prefix, int(day_start(day + timedelta(days=plus_days)).timestamp() * 1000))
