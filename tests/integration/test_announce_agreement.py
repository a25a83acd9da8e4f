"""Ingest writes a delivery's ``deliveries`` record from SQL inside its batch statement (for
speed); every other announcer uses ``shared.adapters.pg.announce.delivery_record``. Both must
produce the same key and value bytes for the same delivery row, so the dispatcher cannot tell
who announced it."""

from __future__ import annotations

import asyncpg

from shared.adapters.pg.announce import delivery_record
from tests.support.ingest_app import Ingest, create_endpoint
from tests.support.topics import read_deliveries_by_id


async def test_ingest_and_the_shared_announcer_write_identical_records(
        api: Ingest, db: asyncpg.Connection, kafka_bootstrap: str, topic_prefix: str) -> None:
    endpoint = await create_endpoint(api)
    event_ids = []
    for extra in ({}, {"ordering_key": "order-\u00e9-\"7\""}):
        status, body = await api.call("POST", "/v1/events", {
            "account_id": endpoint["account_id"], "type": "invoice.paid", "data": {}, **extra})
        assert status == 202, body
        event_ids.append(body["id"])
    rows = await db.fetch("SELECT * FROM deliveries WHERE event_id = ANY($1::text[])", event_ids)
    assert len(rows) == 2 and {r["ordering_key"] is None for r in rows} == {True, False}
    published = await read_deliveries_by_id(kafka_bootstrap, f"{topic_prefix}deliveries",
                                            {r["id"] for r in rows})
    for row in rows:
        key, _, _, value = published[row["id"]]
        expected = delivery_record(row)
        assert (key, value) == (expected.key, expected.value), row["id"]
