"""The wake-up listener on a real Postgres: a NOTIFY reaches the pipeline, and the listener
comes back after its connection is killed."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import asyncpg

from services.dispatcher.metrics import DispatcherMetrics
from services.dispatcher.offsets import OffsetTracker, Ticket
from services.dispatcher.wakeup import WakeupListener
from shared.core.delivery_message import DeliveryMessage, encode_delivery_message
from shared.core.wakeup import CHANNEL, encode_payload


@dataclass
class _Consumer:
    def takes_wakeups(self) -> bool:
        return True

    def owns(self, partition: int) -> bool:
        return True

    def note_woken(self, delivery_id: str, ticket: Ticket, generation: int) -> None:
        pass


@dataclass
class _Pipeline:
    tracker: OffsetTracker = field(default_factory=OffsetTracker)
    accepted: list[tuple[DeliveryMessage, int | None]] = field(default_factory=list)

    def accept(self, ticket: Ticket, message: DeliveryMessage,
               outbox_id: int | None = None) -> None:
        self.accepted.append((message, outbox_id))

    def arrived(self, count: int) -> None:
        pass


def _payload(i: int) -> tuple[tuple[DeliveryMessage, int], str]:
    m = DeliveryMessage(f"dlv_{i:026d}", f"evt_{i:026d}", "ep_1", "acct", None, None, 0)
    encoded = encode_payload([(i, encode_delivery_message(m))])
    assert encoded is not None
    return (m, i), encoded[0]


async def _until(check: object, timeout_s: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not check():  # type: ignore[operator]
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def test_notified_messages_reach_the_pipeline_and_survive_a_lost_connection(
        database_url: str) -> None:
    pipeline = _Pipeline()
    listener = WakeupListener(database_url, _Consumer(), pipeline, DispatcherMetrics(), 16)
    listener.start()
    conn = await asyncpg.connect(database_url)
    try:
        await asyncio.wait_for(listener.listening.wait(), 10)
        first, payload = _payload(1)
        await conn.execute("SELECT pg_notify($1, $2)", CHANNEL, payload)
        await _until(lambda: pipeline.accepted == [first])
        # the listener's backend is killed (a Postgres restart, a proxy): it reconnects
        killed = await conn.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE application_name = 'postwire-dispatcher-wakeup'"
            " AND datname = current_database()")
        assert killed == 1
        await _until(lambda: not listener.listening.is_set())
        await asyncio.wait_for(listener.listening.wait(), 15)
        second, payload = _payload(2)
        await conn.execute("SELECT pg_notify($1, $2)", CHANNEL, payload)
        await _until(lambda: pipeline.accepted == [first, second])
    finally:
        await conn.close()
        await listener.stop()
