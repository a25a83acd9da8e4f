"""Fan-out, ordering sequences and the transactional outbox, against the REAL broker.

Deliveries go to the matching enabled, live endpoints only; sequences per (endpoint, ordering
key) are consecutive under concurrency; every delivery's message reaches Kafka with the
documented key and value, through the fast path, through the relay after a "killed" publisher,
and after a broker outage that never failed ingest.
"""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer

from deploy.embedded.ports import free_port
from shared.adapters.kafka.partitioning import partition_for
from shared.adapters.kafka.publisher import KafkaPublisher, Message
from shared.adapters.pg.outbox import insert_outbox
from shared.core.delivery_message import (
    DeliveryMessage,
    decode_delivery_message,
    encode_delivery_message,
)
from shared.core.ids import new_id
from shared.outbox_relay import OutboxRelay
from tests.conftest import ServiceEnvFactory
from tests.support.ingest_app import Ingest, create_endpoint, new_account, running_ingest
from tests.support.topics import read_deliveries_by_id

Record = tuple[bytes, DeliveryMessage, int, bytes]  # key, decoded value, partition, raw value


async def post_event(api: Ingest, account: str, **extra: Any) -> dict[str, Any]:
    body = {"account_id": account, "type": "invoice.paid", "data": {}, **extra}
    status, data = await api.call("POST", "/v1/events", body)
    assert status == 202, data
    assert isinstance(data, dict)
    return data


async def topic_partitions(bootstrap: str, topic: str) -> list[int]:
    """The partition ids of ``topic`` as the broker reports them."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer.topics()  # loads metadata
        return sorted(consumer.partitions_for_topic(topic) or set())
    finally:
        await consumer.stop()


async def deliveries_of(db: asyncpg.Connection, event_ids: list[str]) -> list[asyncpg.Record]:
    return list(await db.fetch("SELECT * FROM deliveries WHERE event_id = ANY($1::text[])"
                               " ORDER BY id", event_ids))


async def test_fan_out_matches_patterns_and_skips_disabled_and_deleted_endpoints(
        api: Ingest, db: asyncpg.Connection) -> None:
    account = new_account()
    everything = await create_endpoint(api, account_id=account)
    wildcard = await create_endpoint(api, account_id=account, event_types=["invoice.*"])
    exact = await create_endpoint(api, account_id=account, event_types=["invoice.paid", "x.y"])
    await create_endpoint(api, account_id=account, event_types=["order.*", "invoice"])
    await create_endpoint(api, account_id=account, enabled=False)
    deleted = await create_endpoint(api, account_id=account)
    assert (await api.call("DELETE", f"/v1/endpoints/{deleted['id']}"))[0] == 204
    await create_endpoint(api, event_types=["*"])  # another account
    paid = await post_event(api, account)
    rows = await deliveries_of(db, [paid["id"]])
    assert paid["delivery_count"] == 3
    assert {r["endpoint_id"] for r in rows} == {everything["id"], wildcard["id"], exact["id"]}
    assert {(r["status"], r["account_id"], r["sequence"]) for r in rows} == {
        ("pending", account, None)}
    bare = await post_event(api, account, type="invoice.paid.late")
    assert bare["delivery_count"] == 2  # "*" and "invoice.*"; the exact name does not match


async def test_database_decides_when_the_cache_is_stale(
        api: Ingest, db: asyncpg.Connection) -> None:
    account = new_account()
    kept = await create_endpoint(api, account_id=account)
    stale = await create_endpoint(api, account_id=account)
    await post_event(api, account)  # warms the cache with both endpoints
    await db.execute("UPDATE endpoints SET enabled = false WHERE id = $1", stale["id"])
    event = await post_event(api, account)  # no NOTIFY was sent: the cache still lists both
    assert event["delivery_count"] == 1
    assert [r["endpoint_id"] for r in await deliveries_of(db, [event["id"]])] == [kept["id"]]


async def test_sequences_are_consecutive_per_endpoint_and_key_under_concurrency(
        api: Ingest, db: asyncpg.Connection) -> None:
    account = new_account()
    first = await create_endpoint(api, account_id=account)
    second = await create_endpoint(api, account_id=account)
    singles = [post_event(api, account, ordering_key="k" if i % 4 else "j") for i in range(40)]
    batch = api.call("POST", "/v1/events/batch", {"events": [
        {"account_id": account, "type": "t", "data": {}, "ordering_key": "k"}] * 10})
    await asyncio.gather(*singles, batch)
    rows = await db.fetch("SELECT event_id, endpoint_id, ordering_key, sequence FROM deliveries"
                          " WHERE account_id = $1", account)
    by_key: dict[tuple[str, str], list[int]] = {}
    order: dict[tuple[str, str], list[str]] = {}
    for r in sorted(rows, key=lambda r: r["sequence"]):
        by_key.setdefault((r["endpoint_id"], r["ordering_key"]), []).append(r["sequence"])
        order.setdefault((r["endpoint_id"], r["ordering_key"]), []).append(r["event_id"])
    for endpoint in (first["id"], second["id"]):
        assert by_key[(endpoint, "k")] == list(range(1, 41))
        assert by_key[(endpoint, "j")] == list(range(1, 11))
    for key in ("k", "j"):  # both endpoints saw the events of a key in the same order
        assert order[(first["id"], key)] == order[(second["id"], key)]
    later = [await post_event(api, account, ordering_key="j") for _ in range(3)]
    rows = await db.fetch("SELECT sequence FROM deliveries WHERE event_id = ANY($1::text[])"
                          " AND endpoint_id = $2 ORDER BY event_id", [e["id"] for e in later],
                          first["id"])
    assert [r["sequence"] for r in rows] == [11, 12, 13]


async def test_messages_reach_the_broker_with_key_and_value(
        api: Ingest, db: asyncpg.Connection, kafka_bootstrap: str, topic_prefix: str) -> None:
    account = new_account()
    endpoint = await create_endpoint(api, account_id=account)
    ordered = [await post_event(api, account, ordering_key="cust|7") for _ in range(2)]
    loose = await post_event(api, account)
    rows = await deliveries_of(db, [e["id"] for e in [*ordered, loose]])
    found = await read_deliveries_by_id(kafka_bootstrap, f"{topic_prefix}deliveries",
                                  {r["id"] for r in rows})
    for row in rows:
        key, message, _, raw = found[row["id"]]
        assert message == DeliveryMessage(row["id"], row["event_id"], endpoint["id"], account,
                                          row["ordering_key"], row["sequence"], 0)
        assert raw == encode_delivery_message(message)
        assert key == endpoint["id"].encode()   # endpoint affinity: keyed or not
    assert len({found[r["id"]][2] for r in rows}) == 1  # one partition for the endpoint
    # ...and the one every Postwire producer picks for the key (not a 1-in-N coincidence)
    partitions = await topic_partitions(kafka_bootstrap, f"{topic_prefix}deliveries")
    assert len(partitions) > 1
    for row in rows:
        key, _, partition, _ = found[row["id"]]
        assert partition == partition_for(key, partitions, partitions)
    for _ in range(200):  # the fast path deletes what the broker acknowledged
        if not await _outbox_ids(db, {r["id"] for r in rows}):
            break
        await asyncio.sleep(0.05)
    assert await _outbox_ids(db, {r["id"] for r in rows}) == []


async def _outbox_ids(db: asyncpg.Connection, delivery_ids: set[str]) -> list[int]:
    rows = await db.fetch("SELECT id, value FROM outbox")
    return [r["id"] for r in rows
            if decode_delivery_message(bytes(r["value"])).delivery_id in delivery_ids]


async def test_relay_publishes_rows_a_killed_publisher_left_behind(
        api: Ingest, db: asyncpg.Connection, database_url: str, kafka_bootstrap: str,
        topic_prefix: str) -> None:
    messages = [DeliveryMessage(new_id("dlv"), new_id("evt"), new_id("ep"), "acct", None, None)
                for _ in range(3)]
    async with db.transaction():  # committed, then the process "died" before publishing
        await insert_outbox(db, [Message("deliveries", m.key, encode_delivery_message(m))
                                 for m in messages])
    wanted = {m.delivery_id for m in messages}
    assert len(await _outbox_ids(db, wanted)) == 3
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    publisher = KafkaPublisher(kafka_bootstrap, topic_prefix, 16)
    try:
        assert await OutboxRelay(pool, publisher, min_age_s=0).relay_once() >= 3
    finally:
        await publisher.stop()
        await pool.close()
    found = await read_deliveries_by_id(kafka_bootstrap, f"{topic_prefix}deliveries", wanted)
    assert {k: v[1] for k, v in found.items()} == {m.delivery_id: m for m in messages}
    assert await _outbox_ids(db, wanted) == []


async def test_broker_outage_still_accepts_and_the_relay_catches_up(
        service_env: ServiceEnvFactory, db: asyncpg.Connection, database_url: str,
        kafka_bootstrap: str, topic_prefix: str) -> None:
    env = service_env(KAFKA_BOOTSTRAP=f"127.0.0.1:{free_port()}")  # nothing listens there
    async with running_ingest(env) as down:
        account = new_account()
        await create_endpoint(down, account_id=account)
        async with asyncio.timeout(10):
            accepted = [await post_event(down, account, ordering_key="o") for _ in range(3)]
        rows = await deliveries_of(db, [e["id"] for e in accepted])
        wanted = {r["id"] for r in rows}
        assert len(wanted) == 3 and len(await _outbox_ids(db, wanted)) == 3
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    publisher = KafkaPublisher(kafka_bootstrap, topic_prefix, 16)
    try:
        assert await OutboxRelay(pool, publisher, min_age_s=0).relay_once() >= 3
    finally:
        await publisher.stop()
        await pool.close()
    found = await read_deliveries_by_id(kafka_bootstrap, f"{topic_prefix}deliveries", wanted)
    assert [found[r["id"]][1].sequence for r in rows] == [1, 2, 3]
    assert await _outbox_ids(db, wanted) == []
