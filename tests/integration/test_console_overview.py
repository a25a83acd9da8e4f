"""The console overview's numbers from real data: attempts in Postgres bucketed per minute
(rate, success ratio, p50/p99), dead letters per hour, and the dispatcher group's consumer lag
read from the real broker."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from services.dlq_replay.console.lag import LagSample, LagSampler
from services.dlq_replay.console.overview import build_overview
from services.dlq_replay.settings import load_admin_settings
from shared.adapters.kafka.topics import DELIVERIES, ensure_topics, topic_name
from shared.core.ids import new_id
from shared.core.timefmt import utcnow
from tests.conftest import ServiceEnvFactory
from tests.support.seeding import insert_dead_deliveries, insert_endpoint

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_overview_reads_attempts_and_dead_letters(pool: asyncpg.Pool) -> None:
    endpoint = await insert_endpoint(pool, account_id="acct_overview", url="http://127.0.0.1:1/h")
    [delivery] = await insert_dead_deliveries(pool, endpoint, 1)
    await insert_dead_deliveries(pool, endpoint, 2)
    now = utcnow()
    for attempt, (status, duration) in enumerate([(200, 10), (200, 20), (204, 30), (500, 400)],
                                                 start=1):
        await pool.execute(
            "INSERT INTO attempts (id, delivery_id, attempt, started_at, duration_ms,"
            " status_code) VALUES ($1, $2, $3, $4, $5, $6)",
            new_id("att"), delivery.delivery_id, attempt, now, duration, status)
    minute = now.timestamp() // 60 * 60  # both samples in the current minute
    lag = [LagSample(minute + 0.1, 7), LagSample(minute + 0.2, 3)]
    overview = await build_overview(pool, lag, now=now.timestamp())
    headline = dict(overview.headline)
    assert headline["delivered, last hour"] == "3"
    assert headline["attempts, last hour"] == "4"
    assert headline["success ratio, last hour"] == "75.0%"
    assert headline["dead letters, last 24 h"] == "3"
    assert headline["consumer lag now"] == "3"
    charts = {c.title: c for c in overview.charts}
    assert charts["Deliveries per second"].series[0].latest == "0.05/s"
    assert charts["Success ratio"].series[0].latest == "75.0%"
    p50, p99 = charts["Latency"].series
    assert (p50.latest, p99.latest) == ("25 ms", "389 ms")  # percentile_cont interpolates
    assert charts["Dead letters per hour"].series[0].latest == "3"
    assert charts["Consumer lag"].series[0].latest == "7"  # the highest sample of the minute
    assert not any(c.empty for c in overview.charts)
    # the hour of attempts is read through an index on every partition, not by scanning them
    indexed = await pool.fetchval(
        "SELECT bool_and(EXISTS (SELECT 1 FROM pg_index i JOIN pg_attribute a"
        "  ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]"
        "  WHERE i.indrelid = c.oid AND a.attname = 'started_at'))"
        " FROM pg_class c WHERE c.relname = 'attempts' OR c.oid IN"
        " (SELECT inhrelid FROM pg_inherits WHERE inhparent = 'attempts'::regclass)")
    assert indexed is True


async def test_lag_is_what_the_group_has_not_committed(
        service_env: ServiceEnvFactory, kafka_bootstrap: str, topic_prefix: str) -> None:
    settings = load_admin_settings(service_env(KAFKA_PARTITIONS="2"))
    group = f"{topic_prefix}lagtest"
    await ensure_topics(kafka_bootstrap, topic_prefix, 2)
    topic = topic_name(topic_prefix, DELIVERIES)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        for n in range(10):
            await producer.send_and_wait(topic, f"m{n}".encode(), key=f"k{n}".encode())
    finally:
        await producer.stop()
    sampler = LagSampler(settings.common, group, interval_s=1.0)
    try:
        assert await sampler.sample() == 10  # nothing committed: everything is behind
        consumer = AIOKafkaConsumer(topic, bootstrap_servers=kafka_bootstrap, group_id=group,
                                    enable_auto_commit=False, auto_offset_reset="earliest")
        await consumer.start()
        try:
            seen = 0
            async with asyncio.timeout(20):
                while seen < 10:
                    batch = await consumer.getmany(timeout_ms=200)
                    seen += sum(len(records) for records in batch.values())
            await consumer.commit()
        finally:
            await consumer.stop()
        assert await sampler.sample() == 0
    finally:
        await sampler.stop()
