"""Fault test of the ingest service: the broker is down, the ingest process accepts events
anyway (it is not ready, and says why), then is killed with SIGKILL before anything reached
Kafka. A new ingest process's relay publishes every message the killed one left, with the
contract's keys, once the broker is reachable.
"""

from __future__ import annotations

import asyncio

import aiohttp
import asyncpg

from deploy.embedded.ports import free_port
from shared.adapters.kafka.topics import DELIVERIES, topic_name
from tests.conftest import TEST_API_KEY, RunService, ServiceEnvFactory
from tests.support.dispatch import poll
from tests.support.ledger import assert_ledger_balances
from tests.support.topics import read_deliveries_by_id

AUTH = {"Authorization": f"Bearer {TEST_API_KEY}"}
EVENTS = 30


async def test_relay_publishes_what_a_killed_ingest_left_while_the_broker_was_down(
        run_service: RunService, service_env: ServiceEnvFactory, database_url: str,
        kafka_bootstrap: str, topic_prefix: str) -> None:
    dead_broker = f"127.0.0.1:{free_port()}"  # nothing listens there
    first = run_service("ingest", service_env(KAFKA_BOOTSTRAP=dead_broker), wait=False)
    await first.wait_healthy_async(timeout_s=60)
    account = "acct_relay_fault"
    async with aiohttp.ClientSession(first.base_url, headers=AUTH) as http:
        async with http.post("/v1/endpoints", json={
                "account_id": account, "url": "http://127.0.0.1:8999/hooks"}) as resp:
            assert resp.status == 201, await resp.text()
            endpoint_id = (await resp.json())["id"]
        accepted = []
        for n in range(EVENTS):
            body = {"account_id": account, "type": "relay.test", "data": {"n": n}}
            if n % 3 == 0:
                body["ordering_key"] = "K"
            async with http.post("/v1/events", json=body) as resp:
                assert resp.status == 202, await resp.text()  # a broker outage fails nothing
                accepted.append(await resp.json())
        async with http.get("/readyz") as resp:
            assert resp.status == 503
            assert (await resp.json())["error"]["message"].startswith("kafka:")
    await asyncio.to_thread(first.kill)

    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    try:
        rows = await pool.fetch(
            "SELECT d.id, d.event_id, d.ordering_key FROM deliveries d"
            " WHERE d.account_id = $1", account)
        assert len(rows) == EVENTS and {r["event_id"] for r in rows} == {
            a["id"] for a in accepted}
        left = await pool.fetchval("SELECT count(*) FROM outbox WHERE topic = $1", DELIVERIES)
        assert left >= EVENTS, "the killed process published nothing: its outbox rows remain"

        run_service("ingest", service_env(), wait=True)  # the real broker this time
        wanted = {r["id"] for r in rows}
        found = await read_deliveries_by_id(kafka_bootstrap, topic_name(topic_prefix, DELIVERIES),
                                            wanted, timeout_s=60)
        assert set(found) == wanted
        for row in rows:
            key, message, _, _ = found[row["id"]]
            assert key == endpoint_id.encode()   # the endpoint, keyed delivery or not
            assert (message.event_id, message.endpoint_id) == (row["event_id"], endpoint_id)

        # published rows leave the outbox (the module's own database: nothing else writes it)
        await poll(lambda: pool.fetchval("SELECT count(*) FROM outbox"), lambda n: n == 0, 30)
        await assert_ledger_balances(pool)  # every accepted event has its deliveries
    finally:
        await pool.close()
