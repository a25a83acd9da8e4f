"""The wake-up channel: when ingest notifies, the payload, and what a dispatcher takes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import cast

import pytest
from aiokafka import TopicPartition

import services.dispatcher.consumer as consumer_module
from services.dispatcher.consumer import DeliveryConsumer
from services.dispatcher.metrics import DispatcherMetrics
from services.dispatcher.offsets import OffsetTracker, Ticket
from services.dispatcher.pipeline import Pipeline
from services.dispatcher.settings import load_dispatcher_settings
from services.dispatcher.wakeup import WAKEUP_PARTITION, WakeupListener
from shared.adapters.kafka.partitioning import partition_for
from shared.core.delivery_message import (
    DeliveryMessage,
    decode_delivery_message,
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
    woken: list[str] = field(default_factory=list)

    def takes_wakeups(self) -> bool:
        return self.quiet

    def owns(self, partition: int) -> bool:
        return partition in self.owned

    def note_woken(self, delivery_id: str) -> None:
        self.woken.append(delivery_id)


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
    assert consumer.woken == [m.delivery_id for _, m in pipeline.accepted]
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


@dataclass
class _Record:
    offset: int
    value: bytes


def _consumer(pipeline: _Pipeline) -> DeliveryConsumer:
    settings = load_dispatcher_settings({
        "POSTWIRE_DATABASE_URL": "postgresql://u@127.0.0.1:5432/db",
        "POSTWIRE_KAFKA_BOOTSTRAP": "127.0.0.1:9092"})
    return DeliveryConsumer(settings, cast(Pipeline, pipeline), DispatcherMetrics(),
                            on_log_lost=lambda: None)


def test_the_kafka_copy_of_a_wake_up_is_claimed_but_is_not_traffic() -> None:
    """The copy still goes to the claim (Postgres decides), but it must not end the quiet
    spell: otherwise every lone event would buy a second of 10 ms polling."""
    pipeline = _Pipeline()
    consumer = _consumer(pipeline)
    woken, other = _message(1)[1], _message(2)[1]
    consumer.note_woken(decode_delivery_message(woken).delivery_id)
    tp = TopicPartition("t", 0)
    records = [_Record(0, woken), _Record(1, other)]
    assert consumer._accept(tp, records) == 1              # only the other one is fresh
    assert len(pipeline.accepted) == 2                     # both are claimed
    assert consumer._accept(tp, [_Record(2, woken)]) == 1  # a second copy counts again


def test_woken_ids_are_forgotten_after_a_while_and_bounded(
        monkeypatch: pytest.MonkeyPatch) -> None:
    consumer = _consumer(_Pipeline())
    clock = [1000.0]
    monkeypatch.setattr(consumer_module.time, "monotonic", lambda: clock[0])  # type: ignore[attr-defined]
    consumer.note_woken("a")
    clock[0] += consumer_module.WOKEN_FORGET_S + 0.1
    consumer.note_woken("b")
    assert list(consumer._woken) == ["b"]
    monkeypatch.setattr(consumer_module, "WOKEN_MAX", 3)
    for name in "cdef":
        consumer.note_woken(name)
    assert list(consumer._woken) == ["d", "e", "f"]
