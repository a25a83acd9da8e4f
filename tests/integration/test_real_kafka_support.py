"""The real Apache Kafka test support: a cluster starts on free ports, carries messages, loses
everything on ``restart_empty`` (the fault the recovery tests need) and is gone after ``stop``."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.client import AIOKafkaClient

from shared.adapters.kafka.metadata import cluster_id_of
from tests.conftest import RealKafkaFactory
from tests.support.real_kafka import RealKafkaCluster, RealKafkaError, kafka_dist_dir, ports_of
from tests.support.topics import list_topics


async def _round_trip(bootstrap: str, topic: str) -> bytes:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:  # Postwire's clients never auto-create topics (shared/adapters/kafka/metadata.py)
        await admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"hello", key=b"k")
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                group_id="support-test")
    await consumer.start()
    try:
        record = await asyncio.wait_for(consumer.getone(), timeout=30)
        value: bytes = record.value
        return value
    finally:
        await consumer.stop()


async def _cluster_id(bootstrap: str) -> str | None:
    client = AIOKafkaClient(bootstrap_servers=bootstrap)
    await client.bootstrap()
    try:
        return cluster_id_of(client.cluster)
    finally:
        await client.close()


async def test_cluster_round_trip_empty_restart_and_stop(real_kafka: RealKafkaFactory) -> None:
    cluster = real_kafka(1)
    assert cluster.port_base is not None
    assert cluster.bootstrap == f"127.0.0.1:{cluster.port_base}"
    assert await _round_trip(cluster.bootstrap, "support.rt") == b"hello"
    assert "support.rt" in await list_topics(cluster.bootstrap)
    first_id = await _cluster_id(cluster.bootstrap)
    assert first_id

    cluster.restart_empty()
    assert cluster.bootstrap == f"127.0.0.1:{cluster.port_base}"  # same ports, new cluster
    assert "support.rt" not in await list_topics(cluster.bootstrap)
    # a wiped cluster is formatted again: its new id is what the dispatcher notices
    second_id = await _cluster_id(cluster.bootstrap)
    assert second_id and second_id != first_id

    cluster.stop()
    assert not cluster.node_reachable(0)
    cluster.stop()  # idempotent


def test_dist_location_comes_from_the_env_var(monkeypatch: pytest.MonkeyPatch,
                                              tmp_path: Path) -> None:
    assert (kafka_dist_dir() / "start.sh").is_file()
    monkeypatch.setenv("POSTWIRE_KAFKA_DIST", str(tmp_path / "nowhere"))
    with pytest.raises(RealKafkaError, match="POSTWIRE_KAFKA_DIST"):
        kafka_dist_dir()


def test_port_set_and_node_count() -> None:
    assert ports_of(30000, 3) == [30000, 30001, 30002, 30100, 30101, 30102]
    with pytest.raises(ValueError):
        RealKafkaCluster(state_dir=Path("/nonexistent"), nodes=2)
