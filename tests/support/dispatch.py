"""Creating endpoints and events for dispatcher tests straight through SQL, the way ingest does.

:class:`Seeder` writes an endpoint, or an event with its deliveries and their outbox rows in
one transaction (sequence per (endpoint, ordering key) from ``ordering_keys``), then publishes
the messages to Kafka itself and deletes the outbox rows (the fast path of ingest), so tests do
not depend on the ingest service. Also: waits, metrics and dispatcher process fixtures.
"""

from __future__ import annotations

import asyncio
import base64
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import asyncpg
import pytest
import pytest_asyncio

from deploy.embedded.services import ServiceProcess, start_service
from shared.adapters.kafka.publisher import KafkaPublisher, Message, PublishFailed
from shared.adapters.kafka.topics import DELIVERIES
from shared.adapters.pg.outbox import delete_outbox, insert_outbox
from shared.core.delivery_message import DeliveryMessage, encode_delivery_message
from shared.core.ids import new_id
from tests.support.seeding import webhook_body

T = TypeVar("T")


def make_secret() -> str:
    return "whsec_" + base64.b64encode(os.urandom(32)).decode()


@dataclass(frozen=True)
class Endpoint:
    id: str
    account_id: str
    url: str
    secret: str


@dataclass(frozen=True)
class Event:
    id: str
    body: bytes
    delivery_ids: dict[str, str]      # endpoint id -> delivery id
    accepted_at: float                # time.monotonic() when committed
    messages: tuple[Message, ...] = ()  # its ``deliveries`` topic records


class Seeder:
    """Writes test data into one database and announces deliveries on one topic prefix."""

    def __init__(self, pool: asyncpg.Pool, bootstrap: str, prefix: str) -> None:
        self.pool = pool
        self.bootstrap = bootstrap
        self.prefix = prefix
        self.publisher = KafkaPublisher(bootstrap, prefix, partitions=4)

    async def close(self) -> None:
        await self.publisher.stop()

    async def endpoint(self, url: str, *, account_id: str | None = None,
                       max_in_flight: int = 10, rate_limit_per_s: int | None = None,
                       secret: str | None = None, previous_secret: str | None = None,
                       previous_expires_at: datetime | None = None,
                       enabled: bool = True) -> Endpoint:
        ep = Endpoint(new_id("ep"), account_id or f"acct_{uuid.uuid4().hex[:8]}", url,
                      secret or make_secret())
        now = datetime.now(UTC)
        await self.pool.execute(
            "INSERT INTO endpoints (id, account_id, url, event_types, enabled, rate_limit_per_s,"
            " max_in_flight, secret, previous_secret, previous_secret_expires_at, created_at,"
            " updated_at) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$11)",
            ep.id, ep.account_id, url, ["*"], enabled, rate_limit_per_s, max_in_flight,
            ep.secret, previous_secret, previous_expires_at, now)
        return ep

    async def event(self, endpoints: Sequence[Endpoint], *, event_type: str = "test.event",
                    data: dict[str, Any] | None = None, ordering_key: str | None = None,
                    publish: bool = True) -> Event:
        """Store an event for ``endpoints`` (same account) and announce its deliveries."""
        event_id, now = new_id("evt"), datetime.now(UTC)
        account_id = endpoints[0].account_id
        body = webhook_body(event_id, event_type, now, account_id, data or {"n": 1})
        messages: list[Message] = []
        ids: dict[str, str] = {}
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO events (id, account_id, type, ordering_key, body, created_at,"
                " delivery_count) VALUES ($1,$2,$3,$4,$5,$6,$7)",
                event_id, account_id, event_type, ordering_key, body, now, len(endpoints))
            for ep in endpoints:
                msg = await self._delivery(conn, event_id, ep, ordering_key, now)
                ids[ep.id] = msg.delivery_id
                messages.append(Message(DELIVERIES, msg.key, encode_delivery_message(msg)))
            outbox_ids = await insert_outbox(conn, messages)
        accepted = time.monotonic()
        if publish:
            await self._publish(outbox_ids, messages)
        return Event(event_id, body, ids, accepted, tuple(messages))

    async def _publish(self, outbox_ids: list[int], messages: list[Message]) -> None:
        """Ingest's fast path: publish after commit; on failure the rows stay in the outbox
        and a dispatcher's relay publishes them (Tansu hiccups right after a restart)."""
        try:
            await self.publisher.publish(messages, timeout_s=5.0)
        except PublishFailed:
            return
        await delete_outbox(self.pool, outbox_ids)

    async def _delivery(self, conn: asyncpg.Connection, event_id: str, ep: Endpoint,
                        ordering_key: str | None, now: datetime) -> DeliveryMessage:
        sequence = None
        if ordering_key is not None:
            sequence = await conn.fetchval(
                "INSERT INTO ordering_keys (endpoint_id, ordering_key, last_sequence)"
                " VALUES ($1, $2, 1) ON CONFLICT (endpoint_id, ordering_key)"
                " DO UPDATE SET last_sequence = ordering_keys.last_sequence + 1"
                " RETURNING last_sequence", ep.id, ordering_key)
        delivery_id = new_id("dlv")
        await conn.execute(
            "INSERT INTO deliveries (id, event_id, endpoint_id, account_id, ordering_key,"
            " sequence, status, created_at, updated_at)"
            " VALUES ($1,$2,$3,$4,$5,$6,'pending',$7,$7)",
            delivery_id, event_id, ep.id, ep.account_id, ordering_key, sequence, now)
        return DeliveryMessage(delivery_id, event_id, ep.id, ep.account_id, ordering_key,
                               sequence, 0)

    async def status(self, delivery_id: str) -> str:
        return str(await self.pool.fetchval(
            "SELECT status FROM deliveries WHERE id = $1", delivery_id))

    async def statuses(self, delivery_ids: Sequence[str]) -> dict[str, str]:
        rows = await self.pool.fetch("SELECT id, status FROM deliveries WHERE id = ANY($1)",
                                     list(delivery_ids))
        return {r["id"]: r["status"] for r in rows}

    async def attempts(self, delivery_id: str) -> list[asyncpg.Record]:
        return list(await self.pool.fetch(
            "SELECT * FROM attempts WHERE delivery_id = $1 ORDER BY attempt", delivery_id))

    async def wait_status(self, delivery_ids: Sequence[str], wanted: set[str],
                          timeout_s: float) -> dict[str, str]:
        """Poll until every delivery's status is in ``wanted``; TimeoutError otherwise."""
        return await poll(lambda: self.statuses(delivery_ids),
                          lambda got: len(got) == len(set(delivery_ids))
                          and all(s in wanted for s in got.values()), timeout_s)


async def poll(fetch: Callable[[], Awaitable[T]], done: Callable[[T], bool],
                  timeout_s: float, interval_s: float = 0.1) -> T:
    """Call ``fetch`` until ``done(result)``; raises TimeoutError with the last result."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = await fetch()
        if done(value):
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met within {timeout_s}s; last value: {value!r}")
        await asyncio.sleep(interval_s)


# ---------------------------------------------------------------------------------- fixtures
FAST_ENV = {
    "RETRY_SCHEDULE": "0,0.2,0.4",
    "DELIVERY_TIMEOUT_S": "2",
    "LEASE_MARGIN_S": "1",
    "RETRY_FLOOR_TIMEOUT_S": "0",
    "RETRY_FLOOR_429_S": "0",
    "SCHEDULER_INTERVAL_S": "0.05",
    "SWEEP_INTERVAL_S": "0.5",
    "SWEEP_STALE_S": "3",
    "KAFKA_PARTITIONS": "4",
    "DISPATCHER_DRAIN_S": "2",
    "KAFKA_SESSION_TIMEOUT_MS": "3000",   # Tansu re-balances only after a member's session ends
}


@pytest_asyncio.fixture(scope="module")
async def seeder(database_url: str, kafka_bootstrap: str,
                 topic_prefix: str) -> AsyncIterator[Seeder]:
    """A :class:`Seeder` on the module's database and topic prefix."""
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=4)
    seeder = Seeder(pool, kafka_bootstrap, topic_prefix)
    try:
        yield seeder
    finally:
        await seeder.close()
        await pool.close()


class DispatcherFactory:
    """Starts dispatcher processes for a module; ``stop_all`` at the end."""

    def __init__(self, service_env: Callable[..., dict[str, str]], log_dir: Path) -> None:
        self._env = service_env
        self._log_dir = log_dir
        self.started: list[ServiceProcess] = []

    async def start(self, **overrides: str | None) -> ServiceProcess:
        env = self._env(**{**FAST_ENV, **overrides})
        log_path = self._log_dir / f"dispatcher-{len(self.started)}.log"
        service = start_service("dispatcher", env, log_path)
        self.started.append(service)
        await service.wait_healthy_async(timeout_s=60.0)
        return service

    def stop_all(self) -> None:
        for service in reversed(self.started):
            service.stop()


@pytest_asyncio.fixture(scope="module")
async def dispatchers(service_env: Callable[..., dict[str, str]],
                      tmp_path_factory: pytest.TempPathFactory,
                      ) -> AsyncIterator[DispatcherFactory]:
    """Factory of dispatcher processes (fast test schedule); all stopped after the module."""
    factory = DispatcherFactory(service_env, tmp_path_factory.mktemp("dispatcher"))
    try:
        yield factory
    finally:
        await asyncio.to_thread(factory.stop_all)


async def metric(service: ServiceProcess, name: str) -> float:
    """Sum of every sample of metric ``name`` on the service's ``/metrics``."""
    async with aiohttp.ClientSession() as session, \
            session.get(f"{service.base_url}/metrics") as response:
        text = await response.text()
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and line[len(name):len(name) + 1] in (" ", "{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


@pytest_asyncio.fixture
async def dispatchers_per_test(service_env: Callable[..., dict[str, str]],
                               tmp_path: Path) -> AsyncIterator[DispatcherFactory]:
    """Like ``dispatchers``, but every process is stopped when the test ends."""
    factory = DispatcherFactory(service_env, tmp_path)
    try:
        yield factory
    finally:
        await asyncio.to_thread(factory.stop_all)
