"""The endpoint cache: what it returns, when it reads Postgres, and NOTIFY-driven invalidation."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest_asyncio

from services.ingest.endpoint_cache import APPLICATION_NAME, EndpointCache, EndpointRoute
from services.ingest.metrics import IngestMetrics
from shared.adapters.pg.notify import notify_endpoints_changed
from shared.adapters.pg.pool import create_pool
from shared.core.ids import new_id
from tests.conftest import ServiceEnvFactory
from tests.support.ingest_app import (
    Ingest,
    create_endpoint,
    new_account,
    running_ingest,
)


@pytest_asyncio.fixture(scope="module")
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    created = await create_pool(database_url, max_size=4)
    try:
        yield created
    finally:
        await created.close()


class CountingPool:
    """Wraps a pool: counts acquisitions and can hold them until ``gate`` is set."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self.acquired = 0
        self.gate = asyncio.Event()
        self.gate.set()
        self.waiting = asyncio.Event()

    @asynccontextmanager
    async def acquire(self) -> AsyncIterator[asyncpg.Connection]:
        self.acquired += 1
        self.waiting.set()
        await self.gate.wait()
        async with self.pool.acquire() as conn:
            yield conn


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@asynccontextmanager
async def started(cache: EndpointCache) -> AsyncIterator[EndpointCache]:
    await cache.start()
    try:
        yield cache
    finally:
        await cache.stop()


async def insert(pool: asyncpg.Pool, account_id: str, *, event_types: list[str] | None = None,
                 enabled: bool = True, deleted: bool = False) -> str:
    endpoint_id = new_id("ep")
    now = datetime.now(UTC)
    await pool.execute(
        """INSERT INTO endpoints (id, account_id, url, event_types, enabled, secret, created_at,
               updated_at, deleted_at) VALUES ($1, $2, 'https://93.184.216.34/', $3, $4,
               'whsec_x', $5, $5, $6)""",
        endpoint_id, account_id, event_types or ["*"], enabled, now, now if deleted else None)
    return endpoint_id


def counts(metrics: IngestMetrics) -> tuple[float, float]:
    sample = metrics.registry.get_sample_value
    return (sample("postwire_endpoint_cache_hits_total") or 0.0,
            sample("postwire_endpoint_cache_misses_total") or 0.0)


async def eventually(check: Callable[[], Awaitable[bool]], within_s: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while not await check():
        assert loop.time() < deadline, f"condition not met within {within_s} s"
        await asyncio.sleep(0.01)


def cache_on(pool: Any, database_url: str | None, **kwargs: Any) -> tuple[EndpointCache,
                                                                          IngestMetrics]:
    metrics = IngestMetrics()
    return EndpointCache(pool, metrics, dsn=database_url, **kwargs), metrics


async def test_routes_are_enabled_live_endpoints_in_creation_order(
        pool: asyncpg.Pool, database_url: str) -> None:
    acct, empty = new_account(), new_account()
    first = await insert(pool, acct, event_types=["invoice.*", "customer.created"])
    await insert(pool, acct, enabled=False)
    await insert(pool, acct, deleted=True)
    second = await insert(pool, acct)
    counting = CountingPool(pool)
    cache, metrics = cache_on(counting, database_url)
    async with started(cache):
        routes = await cache.routes_for_many([acct, empty, acct])
        assert routes == {acct: (EndpointRoute(first, ("invoice.*", "customer.created")),
                                 EndpointRoute(second, ("*",))),
                          empty: ()}
        assert (counting.acquired, counts(metrics)) == (1, (0.0, 2.0))
        assert await cache.routes_for(acct) == routes[acct]
        other = new_account()
        both = await cache.routes_for_many([empty, other])
        assert both == {empty: (), other: ()}
        assert (counting.acquired, counts(metrics)) == (2, (2.0, 3.0))


async def test_entries_expire_after_the_ttl(pool: asyncpg.Pool, database_url: str) -> None:
    acct = new_account()
    clock = Clock()
    counting = CountingPool(pool)
    cache, metrics = cache_on(counting, database_url, ttl_s=5.0, clock=clock)
    async with started(cache):
        assert await cache.routes_for(acct) == ()
        endpoint_id = await insert(pool, acct)  # no NOTIFY: only the TTL can reveal it
        clock.now += 4.9
        assert await cache.routes_for(acct) == ()
        clock.now += 0.2
        assert [r.id for r in await cache.routes_for(acct)] == [endpoint_id]
        assert counts(metrics) == (1.0, 2.0)


async def test_nothing_is_cached_before_start(pool: asyncpg.Pool, database_url: str) -> None:
    counting = CountingPool(pool)
    cache, metrics = cache_on(counting, database_url)
    acct = new_account()
    for _ in range(3):
        assert await cache.routes_for(acct) == ()
    assert (counting.acquired, counts(metrics)) == (3, (0.0, 3.0))
    assert not cache.listening


async def test_invalidation_during_a_lookup_is_not_lost(pool: asyncpg.Pool,
                                                        database_url: str) -> None:
    acct = new_account()
    counting = CountingPool(pool)
    cache, _ = cache_on(counting, database_url)
    async with started(cache):
        counting.gate.clear()
        counting.waiting.clear()
        lookup = asyncio.create_task(cache.routes_for(acct))
        await counting.waiting.wait()  # the lookup is in flight, before its query
        endpoint_id = await insert(pool, acct)
        cache.invalidate(acct)
        counting.gate.set()
        await lookup
        assert [r.id for r in await cache.routes_for(acct)] == [endpoint_id]
        assert counting.acquired == 2  # the overlapping result was not stored


async def test_notify_invalidates_only_after_commit(pool: asyncpg.Pool,
                                                    database_url: str) -> None:
    acct = new_account()
    cache, _ = cache_on(pool, database_url)
    async with started(cache):
        endpoint_id = await insert(pool, acct)
        assert len(await cache.routes_for(acct)) == 1
        async with pool.acquire() as conn:
            tx = conn.transaction()
            await tx.start()
            await conn.execute("UPDATE endpoints SET enabled = false WHERE id = $1", endpoint_id)
            await notify_endpoints_changed(conn, acct)
            await tx.rollback()
        await asyncio.sleep(0.2)
        assert len(await cache.routes_for(acct)) == 1
        async with pool.acquire() as conn, conn.transaction():  # what a dispatcher does
            await conn.execute("UPDATE endpoints SET enabled = false, disabled_reason = 'gone' "
                               "WHERE id = $1", endpoint_id)
            await notify_endpoints_changed(conn, acct)

        async def gone() -> bool:
            return await cache.routes_for(acct) == ()

        await eventually(gone, within_s=1.0)


async def test_listener_loss_clears_and_reconnects(pool: asyncpg.Pool, database_url: str) -> None:
    acct = new_account()
    counting = CountingPool(pool)
    cache, _ = cache_on(counting, database_url, reconnect_delay_s=0.3, ping_interval_s=0.1)
    async with started(cache):
        assert cache.listening
        await cache.routes_for(acct)
        await cache.routes_for(acct)
        assert counting.acquired == 1
        killed = await pool.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND application_name = $1", APPLICATION_NAME)
        assert killed >= 1

        async def deaf() -> bool:
            return not cache.listening

        async def listening() -> bool:
            return cache.listening

        await eventually(deaf, within_s=2.0)
        await cache.routes_for(acct)
        await cache.routes_for(acct)
        assert counting.acquired == 3  # nothing is cached while deaf, and the old entry is gone
        await eventually(listening, within_s=5.0)
        await cache.routes_for(acct)
        await cache.routes_for(acct)
        assert counting.acquired == 4  # cached again once listening
        endpoint_id = await insert(pool, acct)
        await pool.execute("SELECT pg_notify('postwire_endpoints', $1)", acct)

        async def seen() -> bool:
            return [r.id for r in await cache.routes_for(acct)] == [endpoint_id]

        await eventually(seen, within_s=1.0)


async def test_listening_on_a_pooled_connection(database_url: str) -> None:
    own_pool = await create_pool(database_url, max_size=3)
    acct = new_account()
    cache, _ = cache_on(own_pool, None)
    async with started(cache):
        assert cache.listening
        assert await cache.routes_for(acct) == ()
        endpoint_id = await insert(own_pool, acct)
        await own_pool.execute("SELECT pg_notify('postwire_endpoints', $1)", acct)

        async def seen() -> bool:
            return [r.id for r in await cache.routes_for(acct)] == [endpoint_id]

        await eventually(seen, within_s=1.0)
    await asyncio.wait_for(own_pool.close(), timeout=5)  # the listener gave its connection back


# --- across two ingest apps ------------------------------------------------------------------

@pytest_asyncio.fixture(scope="module")
async def apps(service_env: ServiceEnvFactory) -> AsyncIterator[tuple[Ingest, Ingest]]:
    async with running_ingest(service_env()) as first, running_ingest(service_env()) as second:
        yield first, second


async def test_changes_through_one_app_reach_the_other_apps_cache(
        apps: tuple[Ingest, Ingest]) -> None:
    a, b = apps
    acct = new_account()
    assert await b.cache.routes_for(acct) == ()
    hits_before = counts(b.ctx.metrics)[0]
    assert await b.cache.routes_for(acct) == ()
    assert counts(b.ctx.metrics)[0] == hits_before + 1  # B really cached the empty answer

    async def b_sees(expected: tuple[EndpointRoute, ...]) -> None:
        async def check() -> bool:
            return tuple(await b.cache.routes_for(acct)) == expected
        await eventually(check, within_s=1.0)  # far below the 5 s TTL: NOTIFY did it

    endpoint = await create_endpoint(a, account_id=acct, event_types=["invoice.*"])
    await b_sees((EndpointRoute(endpoint["id"], ("invoice.*",)),))
    path = f"/v1/endpoints/{endpoint['id']}"
    assert (await a.call("PATCH", path, {"event_types": ["a", "b.*"]}))[0] == 200
    await b_sees((EndpointRoute(endpoint["id"], ("a", "b.*")),))
    assert (await a.call("PATCH", path, {"enabled": False}))[0] == 200
    await b_sees(())
    assert (await a.call("PATCH", path, {"enabled": True}))[0] == 200
    await b_sees((EndpointRoute(endpoint["id"], ("a", "b.*")),))
    assert (await a.call("DELETE", path))[0] == 204
    await b_sees(())


async def test_local_changes_invalidate_at_once(apps: tuple[Ingest, Ingest]) -> None:
    a, _ = apps
    acct = new_account()
    assert await a.cache.routes_for(acct) == ()
    endpoint = await create_endpoint(a, account_id=acct)
    assert [r.id for r in await a.cache.routes_for(acct)] == [endpoint["id"]]
    assert (await a.call("DELETE", f"/v1/endpoints/{endpoint['id']}"))[0] == 204
    assert await a.cache.routes_for(acct) == ()
