"""End to end: messages keyed the way versions before endpoint affinity keyed them
(``endpoint_id|ordering_key`` or ``endpoint_id|delivery_id``), as an upgrade finds them still in
the topic, are delivered like any other: the dispatcher reads only the value and claims in
Postgres. One real dispatcher process; its sweeper's stale window is 600 s and the messages'
outbox rows are deleted, so nothing but the old-keyed messages can announce the deliveries
(a keyed successor is announced by its predecessor's outcome, with the new key, as always).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator

import pytest_asyncio

from shared.adapters.kafka.publisher import Message
from shared.adapters.kafka.topics import DELIVERIES
from shared.core.delivery_message import decode_delivery_message
from tests.support.dispatch import DispatcherFactory, Seeder
from tests.support.receiver import Receiver


@pytest_asyncio.fixture(scope="module")
async def rx() -> AsyncIterator[Receiver]:
    async with Receiver() as receiver:
        yield receiver


def _old_key(message: Message) -> bytes:
    decoded = decode_delivery_message(message.value)
    tail = decoded.ordering_key if decoded.ordering_key is not None else decoded.delivery_id
    return f"{decoded.endpoint_id}|{tail}".encode()


async def test_messages_with_the_pre_affinity_key_are_delivered(
        seeder: Seeder, rx: Receiver, dispatchers: DispatcherFactory) -> None:
    await dispatchers.start(SWEEP_STALE_S="600")
    first = await seeder.endpoint(rx.url("/old-0"))
    endpoints = [first, await seeder.endpoint(rx.url("/old-1"), account_id=first.account_id)]
    events = [await seeder.event(endpoints, data={"n": n}, publish=False) for n in range(6)]
    events += [await seeder.event(endpoints, data={"n": n}, ordering_key="k", publish=False)
               for n in range(6, 10)]
    messages = [m for e in events for m in e.messages]
    deleted = await seeder.pool.execute("DELETE FROM outbox WHERE value = ANY($1::bytea[])",
                                        [m.value for m in messages])
    assert deleted == f"DELETE {len(messages)}"
    old = [Message(DELIVERIES, _old_key(m), m.value) for m in messages]
    assert all(o.key != m.key for o, m in zip(old, messages, strict=True))
    await seeder.publisher.publish(old, timeout_s=10.0)

    ids = [d for e in events for d in e.delivery_ids.values()]
    assert await seeder.wait_status(ids, {"succeeded"}, 30)
    received = Counter((r.path, r.webhook_id) for r in rx.requests)
    assert set(received) == {(f"/old-{i}", e.id) for i in range(2) for e in events}
    assert max(received.values()) == 1
    for i in range(2):   # the keyed ones in acceptance order, per endpoint
        keyed = [r.json()["data"]["n"] for r in rx.requests_for(f"/old-{i}")
                 if r.json()["data"]["n"] >= 6]
        assert keyed == [6, 7, 8, 9]
