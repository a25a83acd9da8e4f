"""Rows made by SQL in bulk for tests and benchmarks, and the webhook body as ingest renders it.

Seeding writes rows exactly as the ingest and dispatcher services would leave them (an endpoint,
events with their webhook body bytes, ``dead`` deliveries, dead letters), so a replay of them
goes through normal dispatch. :func:`webhook_body` is the test suite's one renderer of the
webhook body. Never imported by product code.
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass
from datetime import datetime

import asyncpg
import orjson

from shared.core.ids import new_id
from shared.core.timefmt import format_ts, utcnow


@dataclass(frozen=True)
class SeededEndpoint:
    """An endpoint row made by :func:`insert_endpoint`."""

    id: str
    account_id: str
    secret: str


@dataclass(frozen=True)
class SeededDelivery:
    """One dead delivery made by :func:`insert_dead_deliveries`; ``body`` is the webhook body."""

    event_id: str
    delivery_id: str
    endpoint_id: str
    body: bytes


async def insert_endpoint(conn: asyncpg.Connection | asyncpg.Pool, *, account_id: str, url: str,
                          enabled: bool = True, deleted: bool = False,
                          max_in_flight: int = 10) -> SeededEndpoint:
    """Insert an endpoint accepting every event type, with a fresh ``whsec_`` secret."""
    endpoint_id = new_id("ep")
    secret = "whsec_" + base64.b64encode(os.urandom(32)).decode()
    now = utcnow()
    await conn.execute(
        "INSERT INTO endpoints (id, account_id, url, event_types, enabled, disabled_reason,"
        " secret, created_at, updated_at, deleted_at, max_in_flight) VALUES ($1, $2, $3,"
        " ARRAY['*'], $4, $5, $6, $7, $7, $8, $9)",
        endpoint_id, account_id, url, enabled, None if enabled else "manual", secret, now,
        now if deleted else None, max_in_flight)
    return SeededEndpoint(endpoint_id, account_id, secret)


def webhook_body(event_id: str, event_type: str, created_at: datetime, account_id: str,
                 data: dict[str, object]) -> bytes:
    """The webhook body as ingest renders it: compact JSON in the contract's key order."""
    return orjson.dumps({"id": event_id, "type": event_type, "timestamp": format_ts(created_at),
                         "account_id": account_id, "data": data})


async def insert_dead_deliveries(
    conn: asyncpg.Connection | asyncpg.Pool, endpoint: SeededEndpoint, count: int, *,
    event_type: str = "invoice.paid", ordering_key: str | None = None,
    dead_at: datetime | None = None, reason: str = "retries_exhausted", status: str = "dead",
) -> list[SeededDelivery]:
    """Insert ``count`` events with one delivery each to ``endpoint``, in ``status`` (dead by
    default, with a dead letter). With ``ordering_key`` they get sequences 1..count."""
    now = utcnow()
    at = dead_at or now
    made = []
    for n in range(count):
        event_id = new_id("evt")
        body = webhook_body(event_id, event_type, now, endpoint.account_id, {"n": n})
        made.append(SeededDelivery(event_id, new_id("dlv"), endpoint.id, body))
    seqs = list(range(1, count + 1)) if ordering_key else [None] * count
    await conn.execute(
        "INSERT INTO events (id, account_id, type, ordering_key, body, created_at, delivery_count)"
        " SELECT e, $2, $3, $4, b, $5, 1 FROM unnest($1::text[], $6::bytea[]) AS t(e, b)",
        [m.event_id for m in made], endpoint.account_id, event_type, ordering_key, now,
        [m.body for m in made])
    await conn.execute(
        "INSERT INTO deliveries (id, event_id, endpoint_id, account_id, ordering_key, sequence,"
        " status, attempt_count, round_attempt_count, last_status_code, last_error, created_at,"
        " updated_at) SELECT d, e, $3, $4, $5, s, $6, 3, 3, 500, 'http 500', $7, $7"
        " FROM unnest($1::text[], $2::text[], $8::bigint[]) AS t(d, e, s)",
        [m.delivery_id for m in made], [m.event_id for m in made], endpoint.id,
        endpoint.account_id, ordering_key, status, now, seqs)
    if status == "dead":
        await conn.execute(
            "INSERT INTO dead_letters (delivery_id, event_id, endpoint_id, account_id, type,"
            " reason, attempt_count, last_status_code, last_error, dead_at)"
            " SELECT d, e, $3, $4, $5, $6, 3, 500, 'http 500', $7"
            " FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS t(d, e, o) ORDER BY o",
            [m.delivery_id for m in made], [m.event_id for m in made], endpoint.id,
            endpoint.account_id, event_type, reason, at)
    return made

