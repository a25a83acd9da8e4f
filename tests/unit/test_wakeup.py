"""The wake-up channel: when ingest notifies, the payload, and what a dispatcher takes."""

from __future__ import annotations

from dataclasses import dataclass, field

from services.dispatcher.metrics import DispatcherMetrics
from services.dispatcher.offsets import OffsetTracker, Ticket
from services.dispatcher.wakeup import WAKEUP_PARTITION, WakeupListener
from shared.adapters.kafka.partitioning import partition_for
from shared.core.delivery_message import (
    DeliveryMessage,
    delivery_key,
    encode_delivery_message,
)
from shared.core.wakeup import (
    MAX_PAYLOAD,
    NOTIFY_FOR_S,
    QUIET_AFTER_S,
    WakeupWindow,
    decode_payload,
    encode_payload,
    partition_of,
)


def _message(i: int) -> tuple[bytes, bytes]:
    m = DeliveryMessage(f"dlv_{i:026d}", f"evt_{i:026d}", "ep_1", "acct", None, None, 0)
    return delivery_key(m.endpoint_id, None, m.delivery_id), encode_delivery_message(m)


def test_ingest_notifies_only_at_the_start_of_a_busy_spell() -> None:
    window = WakeupWindow()
    assert window.should_notify(100.0)                       # first commit ever: quiet before
    assert window.should_notify(100.0 + NOTIFY_FOR_S / 2)    # still inside the window
    t = 100.0 + NOTIFY_FOR_S + 0.01
    assert not window.should_notify(t)                       # busy: no more notifications
    for _ in range(50):
        t += QUIET_AFTER_S / 10
        assert not window.should_notify(t)                   # steady traffic never notifies
    assert window.should_notify(t + QUIET_AFTER_S)           # after a quiet spell: again


def test_partition_is_the_one_every_producer_picks() -> None:
    for i in range(50):
        key, _ = _message(i)
        assert partition_of(key, 16) == partition_for(key, list(range(16)), list(range(16)))


def test_payload_round_trips_and_stays_under_the_postgres_limit() -> None:
    messages = [_message(i) for i in range(200)]
    payload = encode_payload(messages, 16)
    assert payload is not None
    assert len(payload.encode()) <= MAX_PAYLOAD < 8000
    decoded = decode_payload(payload)
    assert 0 < len(decoded) < len(messages)                  # what does not fit is left out
    for (partition, value), (key, raw) in zip(decoded, messages, strict=False):
        assert partition == partition_of(key, 16)
        assert value == raw
    assert encode_payload([], 16) is None


def test_malformed_lines_are_left_out() -> None:
    _key, raw = _message(1)
    good = f"3\t{raw.decode()}"
    assert decode_payload("x\ty\n\n" + good + "\nno tab") == [(3, raw)]


@dataclass
class _Consumer:
    quiet: bool = True
    owned: set[int] = field(default_factory=set)

    def takes_wakeups(self) -> bool:
        return self.quiet

    def owns(self, partition: int) -> bool:
        return partition in self.owned


@dataclass
class _Pipeline:
    tracker: OffsetTracker = field(default_factory=OffsetTracker)
    accepted: list[tuple[Ticket, DeliveryMessage]] = field(default_factory=list)

    def accept(self, ticket: Ticket, message: DeliveryMessage) -> None:
        self.accepted.append((ticket, message))


def test_a_quiet_dispatcher_takes_only_the_messages_of_its_partitions() -> None:
    messages = [_message(i) for i in range(20)]
    payload = encode_payload(messages, 4)
    assert payload is not None
    consumer, pipeline = _Consumer(owned={1, 2}), _Pipeline()
    listener = WakeupListener("postgresql://unused", consumer, pipeline, DispatcherMetrics())
    taken = listener.take(payload)
    expected = [k for k, _ in messages if partition_of(k, 4) in {1, 2}]
    assert taken == len(expected) == len(pipeline.accepted) > 0
    assert all(t.partition == WAKEUP_PARTITION for t, _ in pipeline.accepted)
    # wake-up tickets are never offsets of a Kafka partition
    assert pipeline.tracker.committable({0, 1, 2, 3}) == {}
    for ticket, _ in pipeline.accepted:
        pipeline.tracker.done(ticket)
    assert pipeline.tracker.open_count() == 0


def test_a_busy_dispatcher_ignores_wake_ups() -> None:
    payload = encode_payload([_message(i) for i in range(5)], 1)
    assert payload is not None
    consumer, pipeline = _Consumer(quiet=False, owned={0}), _Pipeline()
    listener = WakeupListener("postgresql://unused", consumer, pipeline, DispatcherMetrics())
    assert listener.take(payload) == 0
    assert pipeline.accepted == []
