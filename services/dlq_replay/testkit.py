"""Helpers for tests, benchmarks and demos of the admin service: dead letters made by SQL in
bulk, and a webhook receiver on a loopback port.

Seeding writes rows exactly as the ingest and dispatcher services would leave them (an endpoint,
events with their webhook body bytes, ``dead`` deliveries, dead letters), so a replay of them
goes through normal dispatch. Never used by the running service.
"""

from __future__ import annotations

import asyncio
import base64
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import asyncpg
import orjson
from aiohttp import web

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


@dataclass(frozen=True)
class Received:
    """One webhook request as the receiver saw it."""

    at: float             # time.monotonic() on arrival
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """A webhook endpoint on ``127.0.0.1``: records every request and answers ``status()``."""

    status: Callable[[Received], int] = field(default=lambda _: 200)
    received: list[Received] = field(default_factory=list)
    url: str = ""
    _runner: web.AppRunner | None = None
    _arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def start(self) -> Receiver:
        """Listen on a free loopback port; ``url`` is set on return."""
        app = web.Application()
        app.router.add_post("/hook", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}/hook"
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.Response:
        item = Received(time.monotonic(), dict(request.headers), await request.read())
        self.received.append(item)
        self._arrived.set()
        return web.Response(status=self.status(item))

    def ids(self) -> list[str]:
        """The ``webhook-id`` of every request, in arrival order."""
        return [r.headers.get("webhook-id", "") for r in self.received]

    async def wait_for(self, count: int, timeout_s: float = 30.0) -> list[Received]:
        """Wait until at least ``count`` requests arrived; raises TimeoutError otherwise."""
        async with asyncio.timeout(timeout_s):
            while len(self.received) < count:
                self._arrived.clear()
                await self._arrived.wait()
        return list(self.received)
