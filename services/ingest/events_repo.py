"""SQL for events, deliveries and their attempts.

A group commit is written by :func:`write_batch`: one statement of data-modifying CTEs over
``unnest`` arrays, so the whole batch costs one round trip and one fsync (measured: a
transaction of separate statements took ~7 round trips and more than twice the latency under
load). The outbox rows are inserted by that statement too, their value rendered in SQL with
exactly the bytes of :func:`shared.core.delivery_message.encode_delivery_message` (an
integration test compares them). Reads take a pool or a connection.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeAlias

import asyncpg
import orjson

from services.ingest.endpoint_cache import EndpointRoute
from services.ingest.event_validation import EventInput, webhook_body
from shared.adapters.pg.where import Where
from shared.core.ids import new_id
from shared.core.matching import matches
from shared.core.retention import delivery_id_window, event_id_ceiling, event_id_floor
from shared.core.wakeup import CHANNEL as WAKEUP_CHANNEL
from shared.core.wakeup import MAX_PAYLOAD

Conn: TypeAlias = asyncpg.Connection | asyncpg.Pool


_WRITE_BATCH_SQL = """
WITH ev AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                         $6::bytea[], $7::text[], $8::text[], $9::bytea[])
        WITH ORDINALITY AS e(id, account_id, type, ordering_key, ordering_key_json, body,
                             response_head, idem_key, request_hash, idx)
), pairs AS (
    SELECT * FROM unnest($10::int[], $11::text[], $12::text[])
        WITH ORDINALITY AS p(event_idx, endpoint_id, delivery_id, pidx)
), live AS (
    SELECT id FROM endpoints WHERE id = ANY($11::text[]) AND enabled AND deleted_at IS NULL
     ORDER BY id FOR SHARE
), fanout AS (
    SELECT p.event_idx, count(*) AS n FROM pairs p JOIN live l ON l.id = p.endpoint_id
     GROUP BY p.event_idx
), claimed AS (
    INSERT INTO idempotency_keys AS k (account_id, key, request_hash, event_id, response,
                                       created_at)
    SELECT e.account_id, e.idem_key, e.request_hash, e.id,
           convert_to(e.response_head || coalesce(f.n, 0) || '}', 'UTF8'), $13
      FROM ev e LEFT JOIN fanout f ON f.event_idx = e.idx
     WHERE e.idem_key IS NOT NULL
     ORDER BY e.account_id, e.idem_key
    ON CONFLICT (account_id, key) DO UPDATE
       SET request_hash = EXCLUDED.request_hash, event_id = EXCLUDED.event_id,
           response = EXCLUDED.response, created_at = EXCLUDED.created_at
     WHERE k.created_at <= $14
    RETURNING k.event_id
), accepted AS (
    SELECT e.*, coalesce(f.n, 0) AS n FROM ev e LEFT JOIN fanout f ON f.event_idx = e.idx
     WHERE e.idem_key IS NULL OR e.id IN (SELECT event_id FROM claimed)
), new_events AS (
    INSERT INTO events (id, account_id, type, ordering_key, body, created_at, delivery_count,
                        idempotency_key)
    SELECT id, account_id, type, ordering_key, body, $13, n, btrim(idem_key, ' ') FROM accepted
), dl AS (
    SELECT p.pidx, p.delivery_id, p.endpoint_id, a.id AS event_id, a.account_id,
           a.ordering_key, a.ordering_key_json
      FROM pairs p JOIN accepted a ON a.idx = p.event_idx JOIN live l ON l.id = p.endpoint_id
), per_key AS (
    SELECT endpoint_id, ordering_key, count(*) AS n FROM dl
     WHERE ordering_key IS NOT NULL GROUP BY endpoint_id, ordering_key
), seq AS (
    INSERT INTO ordering_keys AS o (endpoint_id, ordering_key, last_sequence)
    SELECT endpoint_id, ordering_key, n FROM per_key ORDER BY endpoint_id, ordering_key
    ON CONFLICT (endpoint_id, ordering_key)
    DO UPDATE SET last_sequence = o.last_sequence + EXCLUDED.last_sequence
    RETURNING o.endpoint_id, o.ordering_key, o.last_sequence
), numbered AS (
    SELECT d.*, s.last_sequence - k.n + row_number() OVER (
               PARTITION BY d.endpoint_id, d.ordering_key ORDER BY d.pidx) AS sequence
      FROM dl d
      LEFT JOIN seq s ON s.endpoint_id = d.endpoint_id AND s.ordering_key = d.ordering_key
      LEFT JOIN per_key k ON k.endpoint_id = d.endpoint_id AND k.ordering_key = d.ordering_key
), new_deliveries AS (
    INSERT INTO deliveries (id, event_id, endpoint_id, account_id, ordering_key, sequence,
                            status, next_attempt_at, created_at, updated_at)
    SELECT delivery_id, event_id, endpoint_id, account_id, ordering_key, sequence, 'pending',
           $15, $13, $13 FROM numbered
), new_outbox AS (
    INSERT INTO outbox (topic, key, value)
    SELECT 'deliveries',
           convert_to(endpoint_id, 'UTF8'),
           convert_to(format('{"delivery_id":"%s","event_id":"%s","endpoint_id":"%s",'
                             '"account_id":"%s","ordering_key":%s,"sequence":%s,'
                             '"generation":0}', delivery_id, event_id, endpoint_id, account_id,
                             ordering_key_json, coalesce(sequence::text, 'null')), 'UTF8')
      FROM numbered ORDER BY pidx
    RETURNING id, key, value
)""" + f"""
-- the wake-up (shared/core/wakeup.py): while $16, as many messages as fit in one payload,
-- in id order, are notified by this statement's own transaction (sent at its commit); the
-- caller leaves their outbox rows to the dispatcher that takes them
, lines AS (
    SELECT id, line, sum(octet_length(line) + 1) OVER (ORDER BY id) AS upto
      FROM (SELECT id, id::text || E'\\t' || convert_from(value, 'UTF8') AS line
              FROM new_outbox WHERE $16::boolean) l
), notified AS (
    SELECT count(*) AS n, pg_notify('{WAKEUP_CHANNEL}', string_agg(line, E'\\n' ORDER BY id))
      FROM lines WHERE upto <= {MAX_PAYLOAD} HAVING count(*) > 0
)
SELECT a.idxs, a.counts, o.ids, o.keys, o.vals, coalesce((SELECT n FROM notified), 0) AS notified
  FROM (SELECT array_agg(idx) AS idxs, array_agg(n) AS counts FROM accepted) a,
       (SELECT array_agg(id ORDER BY id) AS ids, array_agg(key ORDER BY id) AS keys,
               array_agg(value ORDER BY id) AS vals FROM new_outbox) o
"""


@dataclass(slots=True)
class BatchRows:
    """Column arrays of one group commit (``unnest`` parameters), filled by the caller.

    Per candidate event: ``ids`` ... ``request_hashes`` (``idem_keys``/``request_hashes`` None
    without an idempotency key; ``response_heads`` is the 202 body up to the delivery count).
    Per candidate delivery: ``pair_events`` (1-based index of its event), ``pair_endpoints``,
    ``pair_deliveries`` (the delivery id to use).
    """

    ids: list[str] = field(default_factory=list)
    account_ids: list[str] = field(default_factory=list)
    types: list[str] = field(default_factory=list)
    ordering_keys: list[str | None] = field(default_factory=list)
    ordering_keys_json: list[str] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)
    response_heads: list[str] = field(default_factory=list)
    idem_keys: list[str | None] = field(default_factory=list)
    request_hashes: list[bytes | None] = field(default_factory=list)
    pair_events: list[int] = field(default_factory=list)
    pair_endpoints: list[str] = field(default_factory=list)
    pair_deliveries: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class BatchWritten:
    """What one :func:`write_batch` stored: per inserted event (1-based index) its delivery
    count, the outbox rows it wrote as ``(outbox id, key, value)`` in id order, and how many
    of them (the first ``notified``) its transaction sent on the wake-up channel."""

    delivery_counts: dict[int, int]
    outbox: list[tuple[int, bytes, bytes]]
    notified: int = 0


def build_batch_rows(events: Sequence[EventInput], candidates: Sequence[int],
                routes: Mapping[str, Sequence[EndpointRoute]], timestamp: str) -> BatchRows:
    """The unnest arrays of a batch: fresh ids, webhook bodies, response heads, and one
    candidate delivery per (event, cached endpoint whose patterns match its type)."""
    rows = BatchRows()
    for position, index in enumerate(candidates, start=1):
        event = events[index]
        event_id = new_id("evt")
        rows.ids.append(event_id)
        rows.account_ids.append(event.account_id)
        rows.types.append(event.type)
        rows.ordering_keys.append(event.ordering_key)
        rows.ordering_keys_json.append(orjson.dumps(event.ordering_key).decode())
        rows.bodies.append(webhook_body(event_id, timestamp, event))
        head = orjson.dumps({"id": event_id, "account_id": event.account_id, "type": event.type,
                             "ordering_key": event.ordering_key, "created_at": timestamp})
        rows.response_heads.append(head[:-1].decode() + ',"delivery_count":')
        rows.idem_keys.append(event.idempotency_key)
        rows.request_hashes.append(event.request_hash)
        for route in routes.get(event.account_id, ()):
            if matches(route.event_types, event.type):
                rows.pair_events.append(position)
                rows.pair_endpoints.append(route.id)
                rows.pair_deliveries.append(new_id("dlv"))
    return rows


async def write_batch(conn: asyncpg.Connection, rows: BatchRows, now: datetime,
                      cutoff: datetime, due_at: datetime, notify: bool = False) -> BatchWritten:
    """Store a group commit in ONE statement, hence one transaction and one round trip.

    In it: share-lock the candidate endpoints still enabled and not deleted (a concurrent
    delete or disable waits for this commit, so its cancellation sees these deliveries; one
    committed before is excluded); claim idempotency keys (``INSERT ... ON CONFLICT DO UPDATE
    ... WHERE created_at <= cutoff``: a live key of another request is not taken, an expired
    one is replaced); insert the events whose key was won or that have none; reserve
    sequences per (endpoint, ordering key) in ``ordering_keys``, consecutive in candidate
    order; insert one ``pending`` delivery (first attempt due at ``due_at``) and one outbox
    message per (event, live endpoint). Keys, ordering keys and endpoints are locked in sorted
    order, so concurrent batches cannot deadlock. With ``notify``, the same statement sends
    the first outbox messages that fit in one payload on the wake-up channel
    (:func:`shared.core.wakeup.encode_payload`'s text, rendered in SQL): Postgres delivers
    it at this commit, so it costs no transaction and no round trip of its own, and never
    announces a batch that rolled back. Raises asyncpg errors; then nothing was stored and
    nothing notified. Must not run inside a transaction block of the caller's (it is one).
    """
    row = await conn.fetchrow(
        _WRITE_BATCH_SQL, rows.ids, rows.account_ids, rows.types, rows.ordering_keys,
        rows.ordering_keys_json, rows.bodies, rows.response_heads, rows.idem_keys,
        rows.request_hashes, rows.pair_events, rows.pair_endpoints, rows.pair_deliveries,
        now, cutoff, due_at, notify)
    if row is None:  # cannot happen: an aggregate always returns one row
        raise RuntimeError("write_batch returned no row")
    counts = dict(zip(row["idxs"] or (), row["counts"] or (), strict=True))
    outbox = list(zip(row["ids"] or (), row["keys"] or (), row["vals"] or (), strict=True))
    return BatchWritten(counts, outbox, row["notified"])


_EVENT_COLUMNS = "id, account_id, type, ordering_key, body, created_at, delivery_count"


async def fetch_event(conn: Conn, event_id: str) -> asyncpg.Record | None:
    """The ``events`` row, or None."""
    return await conn.fetchrow(f"SELECT {_EVENT_COLUMNS} FROM events WHERE id = $1", event_id)


async def fetch_event_deliveries(conn: Conn, event_id: str) -> list[asyncpg.Record]:
    """Every delivery of an event, oldest first. The id window (deliveries are made with
    their event) lets Postgres search only the partitions of the event's day."""
    window = delivery_id_window(event_id)
    if window is None:
        return []
    return list(await conn.fetch(
        "SELECT id, endpoint_id, status, attempt_count, last_attempt_at, next_attempt_at,"
        " last_status_code FROM deliveries WHERE event_id = $1 AND id >= $2 AND id < $3"
        " ORDER BY id", event_id, *window))


@dataclass(frozen=True, slots=True)
class EventFilter:
    """``GET /v1/events`` filters: ``since <= created_at < until``; ``before_id`` = cursor."""

    account_id: str | None
    type: str | None
    since: datetime | None
    until: datetime | None
    before_id: str | None


async def list_events(conn: Conn, where: EventFilter, limit: int) -> list[asyncpg.Record]:
    """Up to ``limit`` events, newest first (by id, which sorts by creation time).

    Only the filters given become SQL conditions, so each combination gets a plan that uses
    ``events_account_idx`` or ``events_account_type_idx`` (the primary key without an
    account). ``since``/``until`` also bound the id (ids carry the creation time), so only
    the partitions of those days are searched.
    """
    low = None if where.since is None else event_id_floor(where.since)
    high = None if where.until is None else event_id_ceiling(where.until)
    sql = Where()
    for condition, value in (("account_id = {}", where.account_id), ("type = {}", where.type),
                             ("created_at >= {}", where.since), ("created_at < {}", where.until),
                             ("id < {}", where.before_id), ("id >= {}", low), ("id < {}", high)):
        sql.when(condition, value)
    return list(await conn.fetch(
        f"SELECT {_EVENT_COLUMNS} FROM events {sql.sql()}"
        f" ORDER BY id DESC LIMIT {sql.param(limit)}", *sql.args))


async def delivery_exists(conn: Conn, delivery_id: str) -> bool:
    """True when a delivery with this id exists."""
    return bool(await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM deliveries WHERE id = $1)", delivery_id))


async def list_attempts(conn: Conn, delivery_id: str, after_attempt: int,
                        limit: int) -> list[asyncpg.Record]:
    """Up to ``limit`` attempts of a delivery numbered above ``after_attempt``, in order."""
    return list(await conn.fetch(
        "SELECT id, attempt, started_at, duration_ms, status_code, error, response_excerpt"
        " FROM attempts WHERE delivery_id = $1 AND attempt > $2 ORDER BY attempt LIMIT $3",
        delivery_id, after_attempt, limit))
