"""Ingest writes a delivery's ``deliveries`` record from SQL inside its batch statement (for
speed); every other announcer uses ``shared.adapters.pg.announce.delivery_record``. Both must
produce the same key and value bytes for the same delivery row, so the dispatcher cannot tell
who announced it.

Endpoint affinity: the key is the endpoint id for keyed and unkeyed deliveries alike, so every
delivery of one endpoint lands on one partition, the one the wake-up listener computes from
the message value (``shared.core.wakeup.partition_of``)."""

from __future__ import annotations

import asyncpg

from shared.adapters.pg.announce import delivery_record
from shared.core.delivery_message import decode_delivery_message
from shared.core.wakeup import partition_of
from tests.support.ingest_app import Ingest, create_endpoint
from tests.support.topics import read_deliveries_by_id


async def test_ingest_and_the_shared_announcer_write_identical_records(
        api: Ingest, db: asyncpg.Connection, kafka_bootstrap: str, topic_prefix: str) -> None:
    first = await create_endpoint(api)
    second = await create_endpoint(api, account_id=first["account_id"])
    event_ids = []
    for extra in ({}, {}, {"ordering_key": "order-\u00e9-\"7\""}, {"ordering_key": "b|c"}):
        status, body = await api.call("POST", "/v1/events", {
            "account_id": first["account_id"], "type": "invoice.paid", "data": {}, **extra})
        assert status == 202, body
        assert body["delivery_count"] == 2, body
        event_ids.append(body["id"])
    rows = await db.fetch("SELECT * FROM deliveries WHERE event_id = ANY($1::text[])", event_ids)
    assert len(rows) == 8 and {r["endpoint_id"] for r in rows} == {first["id"], second["id"]}
    assert sum(r["ordering_key"] is None for r in rows) == 4
    published = await read_deliveries_by_id(kafka_bootstrap, f"{topic_prefix}deliveries",
                                            {r["id"] for r in rows})
    partitions = api.ctx.settings.common.kafka_partitions
    partition_per_endpoint: dict[str, set[int]] = {}
    for row in rows:
        key, _, partition, value = published[row["id"]]
        expected = delivery_record(row)
        assert (key, value) == (expected.key, expected.value), row["id"]
        assert key == row["endpoint_id"].encode(), row["id"]
        # the partition the wake-up listener computes from the value alone is the Kafka one
        assert partition == partition_of(decode_delivery_message(value).key, partitions)
        partition_per_endpoint.setdefault(row["endpoint_id"], set()).add(partition)
    assert {endpoint: len(found) for endpoint, found in partition_per_endpoint.items()} == {
        first["id"]: 1, second["id"]: 1}
