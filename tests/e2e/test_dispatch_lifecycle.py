"""End to end: the first-attempt delay, deleted endpoints, health and metrics, bad config.

The dispatcher runs with ``POSTWIRE_RETRY_SCHEDULE=1,0.2``: one second before the first
attempt, then one retry.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator

import aiohttp
import pytest_asyncio

from deploy.embedded.services import ServiceProcess
from tests.support.dispatch import DispatcherFactory, Seeder, metric
from tests.support.receiver import Receiver, Reply


@pytest_asyncio.fixture(scope="module")
async def rx() -> AsyncIterator[Receiver]:
    async with Receiver() as receiver:
        yield receiver


@pytest_asyncio.fixture(scope="module")
async def dispatcher(dispatchers: DispatcherFactory) -> ServiceProcess:
    return await dispatchers.start(RETRY_SCHEDULE="1,0.2")


async def test_first_attempt_waits_for_schedule_zero(seeder: Seeder, rx: Receiver,
                                                     dispatcher: ServiceProcess) -> None:
    ep = await seeder.endpoint(rx.url("/later"))
    event = await seeder.event([ep])
    await rx.wait_for(lambda: len(rx.requests_for("/later")) >= 1, timeout_s=20)
    assert rx.requests_for("/later")[0].at - event.accepted_at >= 0.95
    await seeder.wait_status(list(event.delivery_ids.values()), {"succeeded"}, 10)


async def test_deliveries_of_a_deleted_endpoint_are_cancelled(seeder: Seeder, rx: Receiver,
                                                              dispatcher: ServiceProcess
                                                              ) -> None:
    ep = await seeder.endpoint(rx.url("/deleted"))
    event = await seeder.event([ep], publish=False)
    await seeder.pool.execute("UPDATE endpoints SET deleted_at = now() WHERE id = $1", ep.id)
    await seeder.publisher.publish(event.messages)
    await seeder.wait_status(list(event.delivery_ids.values()), {"cancelled"}, 20)
    assert rx.requests_for("/deleted") == []


def samples(text: str, name: str) -> list[str]:
    """The sample lines of metric ``name`` (not its HELP/TYPE comments)."""
    return [line for line in text.splitlines()
            if line.startswith(name) and line[len(name):len(name) + 1] in (" ", "{")]


async def test_health_readiness_and_metrics(seeder: Seeder, rx: Receiver,
                                            dispatcher: ServiceProcess) -> None:
    rx.program("/metrics-ok", [], default=Reply(200))
    rx.program("/metrics-dead", [], default=Reply(400))
    ok = await seeder.endpoint(rx.url("/metrics-ok"))
    dead = await seeder.endpoint(rx.url("/metrics-dead"), account_id=ok.account_id)
    before = await metric(dispatcher, "postwire_delivery_latency_seconds_count")
    event = await seeder.event([ok, dead])
    await seeder.wait_status(list(event.delivery_ids.values()), {"succeeded", "dead"}, 20)
    async with aiohttp.ClientSession() as http:
        for path in ("/healthz", "/readyz"):
            async with http.get(dispatcher.base_url + path) as response:
                assert response.status == 200, path
        async with http.get(dispatcher.base_url + "/metrics") as response:
            text = await response.text()
    assert samples(text, "postwire_attempts_total{outcome=\"succeeded\",status_class=\"2xx\"}")
    assert samples(text, "postwire_attempts_total{outcome=\"dead\",status_class=\"4xx\"}")
    assert samples(text, "postwire_dead_letters_total{reason=\"non_retryable_status\"}")
    for name in ("postwire_attempt_duration_seconds_count", "postwire_in_flight",
                 "postwire_consumer_lag", "postwire_scheduler_backlog",
                 "postwire_assigned_partitions", "postwire_outbox_backlog"):
        assert samples(text, name), name
    assert any('state="closed"' in line for line in samples(text, "postwire_circuits"))
    assert await metric(dispatcher, "postwire_delivery_latency_seconds_count") >= before + 1


async def test_bad_configuration_stops_with_one_line_and_status_2() -> None:
    env = {"POSTWIRE_DATABASE_URL": "postgresql://u@127.0.0.1:1/x",
           "POSTWIRE_KAFKA_BOOTSTRAP": "127.0.0.1:1", "POSTWIRE_DELIVERY_TIMEOUT_S": "forever",
           "PATH": "/usr/bin:/bin"}
    result = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "services.dispatcher"], env=env,
        capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "POSTWIRE_DELIVERY_TIMEOUT_S" in lines[0]
