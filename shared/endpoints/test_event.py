"""A test event for one endpoint ("send a test event" in the merchant portal and console).

The event is stored and delivered like any other (same tables, same outbox message, same
signing, retries, limits and attempt history), but it has exactly one delivery: to the endpoint
it was sent to, whatever that endpoint's ``event_types``. Its type is ``postwire.test``, so
a merchant's handler can recognise and ignore it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import asyncpg
import orjson

from shared.adapters.kafka.publisher import Message
from shared.adapters.pg.announce import announce
from shared.core.delivery_status import DeliveryStatus
from shared.core.event_body import render_body
from shared.core.ids import new_id
from shared.core.timefmt import format_ts, utcnow

TEST_EVENT_TYPE = "postwire.test"


@dataclass
class TestEvent:
    """The stored event and its delivery, plus the outbox rows to publish after commit."""

    __test__ = False  # not a pytest test class

    event_id: str
    delivery_id: str
    outbox_ids: list[int] = field(default_factory=list)
    messages: list[Message] = field(default_factory=list)


def test_event_data(sent_by: str) -> dict[str, Any]:
    """The ``data`` of a test event."""
    return {"message": "This is a test event sent from Postwire.", "sent_by": sent_by}


async def insert_test_event(conn: asyncpg.Connection, *, endpoint_id: str, account_id: str,
                            sent_by: str) -> TestEvent:
    """Store a test event with one ``pending`` delivery to ``endpoint_id`` and its outbox
    message, inside the caller's transaction (the endpoint must be live and the caller's)."""
    now = utcnow()
    event_id, delivery_id = new_id("evt"), new_id("dlv")
    body = render_body(event_id, TEST_EVENT_TYPE, format_ts(now) or "", account_id,
                       orjson.dumps(test_event_data(sent_by)))
    await conn.execute(
        "INSERT INTO events (id, account_id, type, ordering_key, body, created_at, delivery_count)"
        " VALUES ($1, $2, $3, NULL, $4, $5, 1)", event_id, account_id, TEST_EVENT_TYPE, body, now)
    await conn.execute(
        "INSERT INTO deliveries (id, event_id, endpoint_id, account_id, status, next_attempt_at,"
        " created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $6, $6)",
        delivery_id, event_id, endpoint_id, account_id, DeliveryStatus.PENDING.value, now)
    messages, outbox_ids = await announce(conn, [{
        "id": delivery_id, "event_id": event_id, "endpoint_id": endpoint_id,
        "account_id": account_id, "ordering_key": None, "sequence": None, "generation": 0}])
    return TestEvent(event_id, delivery_id, outbox_ids, messages)
