"""The dispatcher's side of the wake-up channel (:mod:`shared.core.wakeup`).

One connection of its own LISTENs on ``postwire_wakeups``. While the consumer runs
(``DeliveryConsumer.takes_wakeups``), each notified message whose partition (that of its
Kafka key) this member owns goes to the pipeline at once with its outbox row id, which the
claim transaction deletes once it settled or leased the delivery, and with a ticket of the
pseudo-partition ``WAKEUP_PARTITION``, which is never committed to Kafka. The consumer is told
(``note_woken``): should the row be published after all (the claim only deferred it, or took
longer than the relay's minimum age), the Kafka copy follows that ticket instead of being
claimed again. A message no member takes (listener reconnecting, partition between owners,
consumer stopped) keeps its row and comes by Kafka after the relay's minimum age. An idle
listener costs nothing: no poll, no timer but a ping every ``PING_INTERVAL_S``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from typing import Protocol

import asyncpg

from services.dispatcher.metrics import DispatcherMetrics
from services.dispatcher.offsets import WAKEUP_PARTITION, OffsetTracker, Ticket
from shared.core.delivery_message import DeliveryMessage, decode_delivery_message
from shared.core.wakeup import CHANNEL, decode_payload, partition_of
from shared.tasks import cancel_and_wait, wait_event, within

log = logging.getLogger(__name__)

PING_INTERVAL_S = 30.0         # a silent, half-open connection is found within this
RECONNECT_S = 2.0
_DB_ERRORS = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError)


class WakeupConsumer(Protocol):
    """What the listener asks the Kafka consumer."""

    def takes_wakeups(self) -> bool: ...

    def owns(self, partition: int) -> bool: ...

    def note_woken(self, delivery_id: str, ticket: Ticket, generation: int) -> None: ...


class WakeupPipeline(Protocol):
    """Where taken messages go (``Pipeline``)."""

    @property
    def tracker(self) -> OffsetTracker: ...

    def accept(self, ticket: Ticket, message: DeliveryMessage,
               outbox_id: int | None = None) -> None: ...

    def arrived(self, count: int) -> None: ...


class WakeupListener:
    """LISTEN on the wake-up channel and hand owned messages to the pipeline; see module.
    ``partitions`` is the deliveries topic's partition count (every producer's key hash)."""

    def __init__(self, dsn: str, consumer: WakeupConsumer, pipeline: WakeupPipeline,
                 metrics: DispatcherMetrics, partitions: int) -> None:
        self._dsn = dsn
        self._partitions = partitions
        self._consumer = consumer
        self._pipeline = pipeline
        self._metrics = metrics
        self._seq = itertools.count()
        self._task: asyncio.Task[None] | None = None
        self.listening = asyncio.Event()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="wakeup-listener")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)

    def take(self, payload: str) -> int:
        """Hand the owned messages of ``payload`` to the pipeline; returns how many."""
        if not self._consumer.takes_wakeups():
            return 0
        taken = 0
        for outbox_id, value in decode_payload(payload):
            try:
                message = decode_delivery_message(value)
            except (ValueError, TypeError) as exc:
                log.warning("skipping an undecodable wake-up message: %s", exc)
                continue
            if not self._consumer.owns(partition_of(message.key, self._partitions)):
                continue
            ticket = self._pipeline.tracker.track(WAKEUP_PARTITION, next(self._seq))
            self._consumer.note_woken(message.delivery_id, ticket, message.generation)
            self._pipeline.accept(ticket, message, outbox_id)
            taken += 1
        if taken:
            self._pipeline.arrived(taken)
            self._metrics.wakeups.inc(taken)
        return taken

    def _on_notify(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        self.take(payload)

    async def _run(self) -> None:
        while True:
            try:
                conn: asyncpg.Connection = await asyncpg.connect(
                    self._dsn, timeout=10,
                    server_settings={"application_name": "postwire-dispatcher-wakeup"})
            except _DB_ERRORS as exc:
                log.info("wake-up listener: cannot connect (%s); Kafka still delivers", exc)
            else:
                try:
                    await self._listen(conn)
                except _DB_ERRORS as exc:
                    log.info("wake-up listener: connection lost (%s); reconnecting", exc)
                finally:
                    self.listening.clear()
                    with contextlib.suppress(*_DB_ERRORS):
                        await within(conn.close(), 2)
                    if not conn.is_closed():
                        conn.terminate()
            await asyncio.sleep(RECONNECT_S)

    async def _listen(self, conn: asyncpg.Connection) -> None:
        lost = asyncio.Event()
        conn.add_termination_listener(lambda _conn: lost.set())
        await conn.add_listener(CHANNEL, self._on_notify)
        self.listening.set()
        while not lost.is_set():
            await wait_event(lost, PING_INTERVAL_S)
            if not lost.is_set():
                await conn.fetchval("SELECT 1", timeout=PING_INTERVAL_S)
