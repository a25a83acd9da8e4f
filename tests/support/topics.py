"""Reading a Kafka topic from its beginning in tests: the one topic reader of the test suite.

:func:`read_topic` assigns every partition of a topic (no consumer group, nothing committed),
seeks to the beginning and collects records until the caller's condition holds or the time is
up; it returns what it read either way, so the caller decides whether a shortfall fails.
:func:`read_deliveries` and :func:`read_deadletters` decode the two topics the product writes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from shared.adapters.kafka.topics import DEADLETTER, DELIVERIES, topic_name
from shared.core.delivery_message import DeliveryMessage, decode_delivery_message


@dataclass(frozen=True)
class TopicRecord:
    """One record as read: its partition, key and value bytes."""

    partition: int
    key: bytes | None
    value: bytes


async def read_topic(bootstrap: str, topic: str, *,
                     until: Callable[[list[TopicRecord]], bool],
                     timeout_s: float = 20.0) -> list[TopicRecord]:
    """Read ``topic`` from the beginning of every partition until ``until(records)`` holds or
    ``timeout_s`` passed; returns the records read, partition by partition in offset order.
    A topic the broker does not know yet is asked for again until the time is up."""
    deadline = time.monotonic() + timeout_s
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                fetch_max_wait_ms=20, group_id=None)
    await consumer.start()
    found: list[TopicRecord] = []
    try:
        partitions: set[int] = set()
        while not partitions and time.monotonic() < deadline:
            await consumer.topics()  # loads metadata
            partitions = consumer.partitions_for_topic(topic) or set()
            if not partitions:
                await asyncio.sleep(0.2)
        if not partitions:
            return found
        consumer.assign([TopicPartition(topic, p) for p in sorted(partitions)])
        await consumer.seek_to_beginning()
        while not until(found) and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=200)
            for tp, records in sorted(batches.items(), key=lambda item: item[0].partition):
                found.extend(TopicRecord(tp.partition, r.key, r.value) for r in records)
    finally:
        await consumer.stop()
    return found


async def read_deliveries(bootstrap: str, prefix: str, *, expect: int,
                          timeout_s: float = 20.0) -> list[tuple[bytes, DeliveryMessage]]:
    """Read the ``deliveries`` topic until ``expect`` messages arrived (or the timeout passed);
    returns (key, message) pairs in partition order."""
    records = await read_topic(bootstrap, topic_name(prefix, DELIVERIES),
                               until=lambda got: len(got) >= expect, timeout_s=timeout_s)
    return [(r.key or b"", decode_delivery_message(r.value)) for r in records]


async def read_deliveries_by_id(bootstrap: str, topic: str, wanted: set[str],
                                timeout_s: float = 20.0
                                ) -> dict[str, tuple[bytes, DeliveryMessage, int, bytes]]:
    """Read ``topic`` (a full topic name) until every delivery id in ``wanted`` was seen;
    returns, for those ids, (key, decoded message, partition, raw value). Raises TimeoutError
    naming the missing ids when some did not arrive within ``timeout_s``."""
    def seen(records: list[TopicRecord]) -> set[str]:
        return {decode_delivery_message(r.value).delivery_id for r in records}

    records = await read_topic(bootstrap, topic, until=lambda got: wanted <= seen(got),
                               timeout_s=timeout_s)
    found = {}
    for r in records:
        message = decode_delivery_message(r.value)
        found[message.delivery_id] = (r.key or b"", message, r.partition, r.value)
    missing = wanted - set(found)
    if missing:
        raise TimeoutError(f"{len(missing)} deliveries not on {topic}: {sorted(missing)[:5]}")
    return {k: v for k, v in found.items() if k in wanted}


async def read_deadletters(bootstrap: str, prefix: str, want: int,
                           timeout_s: float) -> list[dict[str, Any]]:
    """Read at least ``want`` records from the ``deadletter`` topic (from the beginning); each
    is the record's JSON object with its key under ``_key``."""
    records = await read_topic(bootstrap, topic_name(prefix, DEADLETTER),
                               until=lambda got: len(got) >= want, timeout_s=timeout_s)
    return [orjson.loads(r.value) | {"_key": (r.key or b"").decode()} for r in records]


async def list_topics(bootstrap: str) -> set[str]:
    """The topic names the broker answering at ``bootstrap`` lists now."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return set(await admin.list_topics())
    finally:
        await admin.close()
