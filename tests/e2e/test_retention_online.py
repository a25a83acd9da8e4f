"""Ingest, dispatch and replay keep working while partitions are created and dropped.

The three services run as processes (each also runs its own retention loop every 0.3 s, so
rounds contend for the advisory lock) while a churn task bulk-loads an expired day and runs a
round that creates the partitions of a new day ahead and drops the expired one, again and
again. Meanwhile events are posted and must all be delivered, and dead letters are replayed
and must all be delivered again.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

import aiohttp
import asyncpg
import pytest
import pytest_asyncio

from deploy.embedded.services import ServiceName, ServiceProcess, start_service
from shared.core.retention import RetentionPolicy
from shared.retention.loop import run_locked_round
from shared.retention.seed import seed_day
from shared.retention.settings import load_retention_policy
from tests.conftest import TEST_ADMIN_TOKEN, TEST_API_KEY, ServiceEnvFactory
from tests.support.receiver import Receiver, Reply
from tests.support.seeding import insert_endpoint

pytestmark = pytest.mark.asyncio(loop_scope="session")

HOOK = "/hook"  # the receiver path every endpoint of this module posts to
INGEST = {"Authorization": f"Bearer {TEST_API_KEY}"}
ADMIN = {"Authorization": f"Bearer {TEST_ADMIN_TOKEN}"}
EVENTS = 240
DEAD = 20
TODAY = datetime.now(UTC).date()


@dataclass
class Live:
    ingest: ServiceProcess
    admin: ServiceProcess
    http: aiohttp.ClientSession

    async def call(self, service: ServiceProcess, method: str, path: str,
                   body: Any = None) -> tuple[int, Any]:
        auth = ADMIN if service is self.admin else INGEST
        async with self.http.request(method, service.base_url + path, json=body,
                                     headers=auth) as response:
            raw = await response.read()
            return response.status, (await response.json() if raw else None)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def live(service_env: ServiceEnvFactory,
               tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Live]:
    env = service_env(RETRY_SCHEDULE="0,1", RETENTION_INTERVAL_S="0.3",
                      RETENTION_DROP_PAUSE_S="0")
    logs = tmp_path_factory.mktemp("retention-e2e")
    names: tuple[ServiceName, ...] = ("ingest", "dispatcher", "dlq_replay")
    started = [start_service(name, env, logs / f"{name}.log") for name in names]
    try:
        for service in started:
            await service.wait_healthy_async(timeout_s=60)
        async with aiohttp.ClientSession() as http:
            yield Live(started[0], started[2], http)
    finally:
        for service in started:
            await asyncio.to_thread(service.stop)


async def _churn(dsn: str, stop: asyncio.Event, loaded: list[date],
                 enough: asyncio.Event) -> None:
    """Until ``stop``: load an expired day, then run a round that also creates a day further
    ahead than the last; appends to ``loaded`` each day it loaded (this round or a service's
    drops it); sets ``enough`` after four."""
    conn = await asyncpg.connect(dsn)
    policy = load_retention_policy({})
    endpoint = await insert_endpoint(conn, account_id="acct_churn", url="http://127.0.0.1:9/h")
    try:
        for n in range(60):
            if stop.is_set():
                break
            day = TODAY - timedelta(days=60 + n)
            await seed_day(conn, day, 500, endpoint_id=endpoint.id, account_id="acct_churn")
            loaded.append(day)
            if len(loaded) >= 4:
                enough.set()
            ahead: RetentionPolicy = replace(policy, ahead_days=8 + n)
            report = None
            while report is None and not stop.is_set():
                report = await run_locked_round(dsn, ahead)
                if report is None:
                    await asyncio.sleep(0.05)
    finally:
        await conn.close()


async def test_ingest_dispatch_and_replay_work_while_partitions_churn(
        live: Live, database_url: str) -> None:
    good, flaky = await Receiver().start(), await Receiver().start()
    flaky.program(HOOK, [], default=Reply(400))  # dead at once: non-retryable
    try:
        account = f"acct_{uuid.uuid4().hex[:8]}"
        endpoints = []
        for url in (good.url(HOOK), flaky.url(HOOK)):
            status, endpoint = await live.call(live.ingest, "POST", "/v1/endpoints", {
                "account_id": account, "url": url, "event_types": [
                    "invoice.paid" if url == good.url(HOOK) else "invoice.failed"]})
            assert status == 201, endpoint
            endpoints.append(endpoint)
        stop = asyncio.Event()
        loaded: list[date] = []
        enough = asyncio.Event()
        churn = asyncio.create_task(_churn(database_url, stop, loaded, enough))
        try:
            dead_ids = []
            for _ in range(DEAD):
                status, event = await live.call(live.ingest, "POST", "/v1/events", {
                    "account_id": account, "type": "invoice.failed", "data": {"n": 1}})
                assert status == 202, event
                dead_ids.append(event["id"])
            sent: list[str] = []
            for burst in range(EVENTS // 20):
                replies = await asyncio.gather(*(
                    live.call(live.ingest, "POST", "/v1/events", {
                        "account_id": account, "type": "invoice.paid",
                        "data": {"burst": burst, "n": n}}) for n in range(20)))
                for status, event in replies:
                    assert status == 202, event
                    sent.append(event["id"])
                await asyncio.sleep(0.05)
            await flaky.wait_for_count(DEAD, timeout_s=60)
            await _wait_dead(live, endpoints[1]["id"], DEAD)
            flaky.program(HOOK, [], default=Reply(200))
            for event_id in dead_ids:
                status, body = await live.call(
                    live.admin, "POST", f"/admin/v1/events/{event_id}/replay",
                    {"reason": "receiver fixed"})
                assert status == 202, body
                assert [d["outcome"] for d in body["deliveries"]] == ["queued"]
            await good.wait_for_count(EVENTS, timeout_s=90)
            await flaky.wait_for_count(2 * DEAD, timeout_s=90)
            await asyncio.wait_for(enough.wait(), 60)  # a slow machine: let the churn catch up
        finally:
            stop.set()
            await churn
        assert sorted(set(good.ids())) == sorted(sent)
        assert sorted(set(flaky.ids())) == sorted(dead_ids)
        conn = await asyncpg.connect(database_url)
        try:
            gone = [day for day in loaded if await conn.fetchval(
                "SELECT to_regclass($1) IS NULL", f"events_p{day:%Y%m%d}")]
            assert len(gone) >= 2, loaded  # days really were dropped while all this ran
            assert await conn.fetchval(
                "SELECT count(*) FROM pg_class WHERE relname LIKE 'events_p%'"
                " AND relname > $1", f"events_p{TODAY + timedelta(days=8):%Y%m%d}") >= 1
        finally:
            await conn.close()
    finally:
        await good.stop()
        await flaky.stop()


async def _wait_dead(live: Live, endpoint_id: str, count: int) -> None:
    async with asyncio.timeout(60):
        while True:
            status, page = await live.call(
                live.admin, "GET", f"/admin/v1/dead-letters?endpoint_id={endpoint_id}&limit=100")
            assert status == 200, page
            if len(page["data"]) >= count:
                return
            await asyncio.sleep(0.2)
