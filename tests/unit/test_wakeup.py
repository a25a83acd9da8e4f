"""The wake-up channel: when ingest notifies, the payload, what a dispatcher takes, and which
outbox rows a claim deletes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import cast

import pytest
from aiokafka import TopicPartition

import services.dispatcher.consumer as consumer_module
import services.dispatcher.offsets as offsets_module
from services.dispatcher.claims import commit_sql, consumed_rows
from services.dispatcher.consumer import DeliveryConsumer
from services.dispatcher.metrics import DispatcherMetrics
from services.dispatcher.model import Pending
from services.dispatcher.offsets import WAKEUP_PARTITION, OffsetTracker, Ticket
from services.dispatcher.pipeline import Pipeline
from services.dispatcher.settings import load_dispatcher_settings
from services.dispatcher.wakeup import WakeupListener
from shared.adapters.kafka.partitioning import partition_for
from shared.core.delivery_message import (
    DeliveryMessage,
    decode_delivery_message,
    delivery_key,
    encode_delivery_message,
)
from shared.core.wakeup import (
    MAX_PAYLOAD,
    NOTIFY_BELOW_PER_S,
    WakeupWindow,
    decode_payload,
    encode_payload,
    partition_of,
)


def _message(i: int) -> tuple[bytes, bytes]:
    """Message ``i``: for endpoint ``ep_<i mod 8>``, every third one with an ordering key."""
    key, seq = (f"order-{i}", 1) if i % 3 == 0 else (None, None)
    m = DeliveryMessage(f"dlv_{i:026d}", f"evt_{i:026d}", f"ep_{i % 8}", "acct", key, seq, 0)
    return delivery_key(m.endpoint_id), encode_delivery_message(m)


def test_ingest_notifies_while_its_traffic_is_low() -> None:
    window = WakeupWindow()
    t = 100.0
    for _ in range(NOTIFY_BELOW_PER_S):                      # up to the limit in a second
        assert window.should_notify(t, 1)
        t += 0.9 / NOTIFY_BELOW_PER_S
    assert not window.should_notify(t, 1)                    # above it: Kafka only
    assert not window.should_notify(t + 0.5, 1)              # the next second: the last was busy
    assert window.should_notify(t + 2.5, 1)                  # a low second later: again


def test_a_large_batch_is_not_notified() -> None:
    assert not WakeupWindow().should_notify(100.0, NOTIFY_BELOW_PER_S + 1)


def test_partition_is_the_one_every_producer_picks() -> None:
    for i in range(50):
        key, _ = _message(i)
        assert partition_of(key, 16) == partition_for(key, list(range(16)), list(range(16)))


def _rows(count: int, first_id: int = 1) -> list[tuple[int, bytes]]:
    return [(first_id + i, _message(i)[1]) for i in range(count)]


def test_payload_round_trips_and_stays_under_the_postgres_limit() -> None:
    rows = _rows(200, first_id=9_000_000_000)
    encoded = encode_payload(rows)
    assert encoded is not None
    payload, count = encoded
    assert len(payload.encode()) <= MAX_PAYLOAD < 8000
    decoded = decode_payload(payload)
    assert 0 < count == len(decoded) < len(rows)            # what does not fit is left out
    assert decoded == rows[:count]                          # a prefix, ids and bytes kept
    one_more = "\n".join([payload, f"{rows[count][0]}\t{rows[count][1].decode()}"])
    assert len(one_more.encode()) > MAX_PAYLOAD             # the prefix is as long as fits
    assert encode_payload([]) is None
    assert encode_payload([(1, b"x" * MAX_PAYLOAD)]) is None


def test_malformed_lines_are_left_out() -> None:
    _key, raw = _message(1)
    good = f"3\t{raw.decode()}"
    assert decode_payload("x\ty\n\n" + good + "\nno tab\n4\t\n\u0663\tz") == [(3, raw)]


@dataclass
class _Consumer:
    running: bool = True
    owned: set[int] = field(default_factory=set)
    woken: list[tuple[str, Ticket, int]] = field(default_factory=list)

    def takes_wakeups(self) -> bool:
        return self.running

    def owns(self, partition: int) -> bool:
        return partition in self.owned

    def note_woken(self, delivery_id: str, ticket: Ticket, generation: int) -> None:
        self.woken.append((delivery_id, ticket, generation))


@dataclass
class _Pipeline:
    tracker: OffsetTracker = field(default_factory=OffsetTracker)
    accepted: list[tuple[Ticket, DeliveryMessage, int | None]] = field(default_factory=list)
    arrivals: list[int] = field(default_factory=list)

    def accept(self, ticket: Ticket, message: DeliveryMessage,
               outbox_id: int | None = None) -> None:
        self.accepted.append((ticket, message, outbox_id))

    def arrived(self, count: int) -> None:
        self.arrivals.append(count)


def test_a_dispatcher_takes_only_the_messages_of_its_partitions() -> None:
    """The partition is that of the message's Kafka key, so exactly the member that would
    read its Kafka copy takes it; each taken message keeps its outbox row id."""
    messages = [_message(i) for i in range(20)]
    encoded = encode_payload([(100 + i, value) for i, (_, value) in enumerate(messages)])
    assert encoded is not None
    consumer, pipeline = _Consumer(owned={1, 2}), _Pipeline()
    listener = WakeupListener("postgresql://unused", consumer, pipeline, DispatcherMetrics(), 4)
    taken = listener.take(encoded[0])
    expected = [100 + i for i, (k, _) in enumerate(messages) if partition_of(k, 4) in {1, 2}]
    assert 0 < taken == len(expected) < len(messages)
    assert [outbox_id for _, _, outbox_id in pipeline.accepted] == expected
    assert pipeline.arrivals == [taken]    # one arrival: the notification's messages together
    # endpoint affinity: one member takes all of an endpoint's messages, keyed or not
    taken_endpoints = {m.endpoint_id for _, m, _ in pipeline.accepted}
    assert {f"ep_{i % 8}" for i in range(len(messages)) if 100 + i in expected} == \
        taken_endpoints
    assert all(f"ep_{i % 8}" not in taken_endpoints
               for i in range(len(messages)) if 100 + i not in expected)
    assert all(t.partition == WAKEUP_PARTITION for t, _, _ in pipeline.accepted)
    assert consumer.woken == [(m.delivery_id, t, m.generation) for t, m, _ in pipeline.accepted]
    # wake-up tickets are never offsets of a Kafka partition
    assert pipeline.tracker.committable({0, 1, 2, 3}) == {}
    for ticket, _, _ in pipeline.accepted:
        pipeline.tracker.done(ticket)
    assert pipeline.tracker.open_count() == 0


def test_a_stopping_dispatcher_ignores_wake_ups() -> None:
    encoded = encode_payload(_rows(5))
    assert encoded is not None
    consumer, pipeline = _Consumer(running=False, owned={0}), _Pipeline()
    listener = WakeupListener("postgresql://unused", consumer, pipeline, DispatcherMetrics(), 1)
    assert listener.take(encoded[0]) == 0
    assert pipeline.accepted == []


def test_an_undecodable_message_is_skipped_and_the_rest_taken() -> None:
    consumer, pipeline = _Consumer(owned={0}), _Pipeline()
    listener = WakeupListener("postgresql://unused", consumer, pipeline, DispatcherMetrics(), 1)
    payload = f"7\t{{\"not\": \"a message\"}}\n8\t{_message(1)[1].decode()}"
    assert listener.take(payload) == 1
    assert [outbox_id for _, _, outbox_id in pipeline.accepted] == [8]


def _pending(i: int, outbox_id: int | None) -> Pending:
    message = decode_delivery_message(_message(i)[1])
    return Pending(Ticket(WAKEUP_PARTITION, i, 1), message, outbox_id=outbox_id)


def test_a_claim_deletes_the_rows_of_what_it_settled_or_leased_but_not_of_a_deferral() -> None:
    batch = [_pending(0, 10), _pending(1, 11), _pending(2, None), _pending(3, 13)]
    assert consumed_rows(batch, []) == [10, 11, 13]
    assert consumed_rows(batch, [(batch[1], 0.1)]) == [10, 13]   # deferred: in memory only
    # an equal request is not the deferred one (identity, not equality, decides)
    twin = _pending(0, 10)
    assert twin == batch[0] and consumed_rows(batch, [(twin, 0.1)]) == [10, 11, 13]


def test_the_rows_are_deleted_by_the_commit_round_trip_skipping_a_relay_s_locks() -> None:
    assert commit_sql([]) == "COMMIT"
    sql = commit_sql([12, 3, 12])
    assert sql.endswith("; COMMIT")
    assert "ANY('{3,12}'::bigint[])" in sql and "FOR UPDATE SKIP LOCKED" in sql


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


def test_the_kafka_copy_of_a_wake_up_follows_it_and_is_not_traffic() -> None:
    """The copy is not claimed again: its offset waits for the wake-up's outcome. It is not
    traffic either, or every lone event would buy a second of 10 ms polling."""
    pipeline = _Pipeline()
    consumer = _consumer(pipeline)
    tracker = pipeline.tracker
    woken, other = _message(1)[1], _message(2)[1]
    message = decode_delivery_message(woken)
    leader = tracker.track(WAKEUP_PARTITION, 0)
    consumer.note_woken(message.delivery_id, leader, message.generation)
    tp = TopicPartition("t", 0)
    assert consumer._accept(tp, [_Record(0, woken), _Record(1, other)]) == 1
    assert [m.delivery_id for _, m, _ in pipeline.accepted] == [
        decode_delivery_message(other).delivery_id]             # the copy is not claimed
    other_ticket = pipeline.accepted[0][0]
    tracker.done(other_ticket)
    assert tracker.committable({tp}) == {tp: 0}                 # the copy's offset waits...
    tracker.done(leader)
    assert tracker.committable({tp}) == {tp: 2}                 # ...for the wake-up's outcome


def test_a_copy_after_its_wake_up_ended_is_claimed_unless_that_settled_it_for_good() -> None:
    """A wake-up that ended in a retry, park or skip may be followed by a later announcement
    of the same generation (the scheduler's, the sweeper's): that must be claimed. Only a
    final outcome (succeeded, dead, cancelled) lets the copy go without a claim."""
    pipeline = _Pipeline()
    consumer = _consumer(pipeline)
    tracker = pipeline.tracker
    tp = TopicPartition("t", 0)
    raws = [_message(i)[1] for i in range(4)]
    ids = [decode_delivery_message(r).delivery_id for r in raws]
    final = tracker.track(WAKEUP_PARTITION, 0)
    consumer.note_woken(ids[0], final, 0)
    tracker.done(final, final=True)                             # succeeded
    assert consumer._accept(tp, [_Record(0, raws[0])]) == 0
    assert pipeline.accepted == [] and tracker.committable({tp}) == {tp: 1}
    retried = tracker.track(WAKEUP_PARTITION, 1)
    consumer.note_woken(ids[1], retried, 0)
    tracker.done(retried)                                       # a retry: not final
    assert consumer._accept(tp, [_Record(1, raws[1])]) == 0
    assert len(pipeline.accepted) == 1                          # claimed
    consumer.note_woken(ids[2], tracker.track(WAKEUP_PARTITION, 2), 7)  # replayed since
    assert consumer._accept(tp, [_Record(2, raws[2])]) == 0
    assert len(pipeline.accepted) == 2                          # claimed
    consumer.note_woken(ids[3], tracker.track(WAKEUP_PARTITION, 3), 0)
    tracker.drop({WAKEUP_PARTITION})                            # the wake-up was dropped
    assert consumer._accept(tp, [_Record(3, raws[3])]) == 0
    assert len(pipeline.accepted) == 3                          # claimed


def test_final_wake_ups_are_remembered_boundedly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(offsets_module, "FINAL_KEPT", 2)
    tracker = OffsetTracker()
    leaders = [tracker.track(WAKEUP_PARTITION, i) for i in range(3)]
    for leader in leaders:
        tracker.done(leader, final=True)
    copy = tracker.track("t0", 0)
    assert tracker.follow(copy, leaders[0]) is False            # forgotten: claim it
    assert tracker.follow(copy, leaders[2]) is True
    assert tracker.committable({"t0"}) == {"t0": 1}
    tracker.done(tracker.track("t0", 1), final=True)            # Kafka tickets never lead
    assert tracker.follow(tracker.track("t0", 2), Ticket("t0", 1, copy.epoch)) is False


def test_woken_ids_are_forgotten_after_a_while_and_bounded(
        monkeypatch: pytest.MonkeyPatch) -> None:
    consumer = _consumer(_Pipeline())
    clock = [1000.0]
    monkeypatch.setattr(consumer_module.time, "monotonic", lambda: clock[0])  # type: ignore[attr-defined]
    ticket = Ticket(WAKEUP_PARTITION, 0, 1)
    consumer.note_woken("a", ticket, 0)
    clock[0] += consumer_module.WOKEN_FORGET_S + 0.1
    consumer.note_woken("b", ticket, 0)
    assert list(consumer._woken) == ["b"]
    monkeypatch.setattr(consumer_module, "WOKEN_MAX", 3)
    for name in "cdef":
        consumer.note_woken(name, ticket, 0)
    assert list(consumer._woken) == ["d", "e", "f"]
