"""A bulk replay of 5,000 dead deliveries at 1,000/s whose admin process is killed (SIGKILL)
halfway: a new admin process resumes it where it stopped and every delivery reaches the
receiver exactly once, never faster than the rate."""

from __future__ import annotations

import asyncio
import bisect
import uuid
from typing import Any

import aiohttp
import asyncpg
import pytest

from services.dlq_replay.testkit import Receiver, insert_dead_deliveries, insert_endpoint
from tests.conftest import TEST_ADMIN_TOKEN, RunService, ServiceEnvFactory

pytestmark = pytest.mark.asyncio(loop_scope="session")

TOTAL = 5000
RATE = 1000
AUTH = {"Authorization": f"Bearer {TEST_ADMIN_TOKEN}"}


async def _get(http: aiohttp.ClientSession, url: str) -> dict[str, Any]:
    async with http.get(url, headers=AUTH) as response:
        assert response.status == 200, await response.text()
        return dict(await response.json())


def busiest_second(times: list[float]) -> int:
    """The most arrivals in any one-second window (closed), by a two-pointer sweep."""
    ordered = sorted(times)
    return max(bisect.bisect_right(ordered, t + 1.0) - i for i, t in enumerate(ordered))


async def test_killed_bulk_replay_resumes_and_sends_each_delivery_once(
        run_service: RunService, service_env: ServiceEnvFactory, database_url: str) -> None:
    receiver = await Receiver().start()
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    try:
        endpoint = await insert_endpoint(pool, account_id=f"acct_{uuid.uuid4().hex[:8]}",
                                         url=receiver.url, max_in_flight=200)
        import time; T0=time.monotonic(); P=lambda m: print(f"{time.monotonic()-T0:6.2f} {m} recv={len(receiver.received)}", flush=True)
        made = await insert_dead_deliveries(pool, endpoint, TOTAL)
        P("seeded")
        env = dict(ADMIN_JOB_LEASE_S="2", ADMIN_JOB_POLL_S="0.1")
        run_service("dispatcher", service_env(DISPATCHER_WAITING_PER_ENDPOINT="10000"), wait=False)
        first = run_service("dlq_replay", service_env(**env), wait=False)
        await first.wait_healthy_async(timeout_s=60); P("first up")
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{first.base_url}/admin/v1/replays", headers=AUTH, json={
                    "reason": "outage", "filter": {"endpoint_id": endpoint.id},
                    "max_per_second": RATE}) as response:
                job = await response.json()
                assert (response.status, job["matched"]) == (202, TOTAL), job
            async with asyncio.timeout(30):
                while (await _get(http, f"{first.base_url}/admin/v1/replays/{job['id']}")
                       )["queued"] < TOTAL // 2:
                    await asyncio.sleep(0.05)
            P("half"); await asyncio.to_thread(first.kill); P("killed")

            row = await pool.fetchrow("SELECT status, queued FROM replay_jobs WHERE id = $1",
                                      job["id"])
            assert row["status"] == "running" and TOTAL // 2 <= row["queued"] < TOTAL
            # progress and requeues commit together: the counter is exactly what was queued
            assert await pool.fetchval(
                "SELECT count(*) FROM deliveries WHERE endpoint_id = $1 AND generation > 0",
                endpoint.id) == row["queued"]

            second = run_service("dlq_replay", service_env(**env), wait=False)
            await second.wait_healthy_async(timeout_s=60); P("second up")
            async with asyncio.timeout(60):
                while (done := await _get(
                        http, f"{second.base_url}/admin/v1/replays/{job['id']}")
                       )["status"] == "running":
                    await asyncio.sleep(0.1)
        assert (done["status"], done["matched"], done["queued"], done["skipped"]) == (
            "completed", TOTAL, TOTAL, 0)

        P("completed")
        received = await receiver.wait_for(TOTAL, timeout_s=60)
        P("received")
        await asyncio.sleep(1.0)  # anything sent twice would arrive now
        ids = receiver.ids()
        assert len(ids) == TOTAL and set(ids) == {m.event_id for m in made}
        rows = await pool.fetch(
            "SELECT d.generation, dl.replay_count FROM deliveries d JOIN dead_letters dl"
            " ON dl.delivery_id = d.id WHERE d.endpoint_id = $1", endpoint.id)
        assert {(r["generation"], r["replay_count"]) for r in rows} == {(1, 1)}
        # the rate holds at the receiver (10% for dispatch jitter), and the job took its time
        times = [r.at for r in received]
        assert busiest_second(times) <= RATE * 1.1
        assert max(times) - min(times) >= (TOTAL / RATE) * 0.8
    finally:
        await pool.close()
        await receiver.stop()
