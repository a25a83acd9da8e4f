"""Postwire's Kafka clients never create a topic by naming it in a metadata request: after a
broker lost its topics, only ``ensure_topics`` re-creates them, with the configured partitions
(an auto-created copy would have the broker's default count and, on Tansu, a producer's
message to a missing topic leaves it unreadable)."""

from __future__ import annotations

import uuid

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from shared.adapters.kafka.metadata import auto_topic_creation_forbidden
from shared.adapters.kafka.topics import ensure_topics, topic_name
from tests.support.topics import list_topics


async def test_a_producer_does_not_create_a_missing_topic(kafka_bootstrap: str) -> None:
    assert auto_topic_creation_forbidden()
    missing = f"noauto.{uuid.uuid4().hex[:8]}"
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, request_timeout_ms=1500)
    await producer.start()
    try:
        with pytest.raises(KafkaError):
            await producer.send_and_wait(missing, b"x")
    finally:
        await producer.stop()
    assert missing not in await list_topics(kafka_bootstrap)


async def test_ensure_topics_creates_them_with_the_configured_partitions(
        kafka_bootstrap: str) -> None:
    prefix = f"na{uuid.uuid4().hex[:6]}."
    await ensure_topics(kafka_bootstrap, prefix, 6)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(topic_name(prefix, "deliveries"), b"x", partition=5)
        assert producer.client.cluster.partitions_for_topic(
            topic_name(prefix, "deliveries")) == set(range(6))
    finally:
        await producer.stop()
