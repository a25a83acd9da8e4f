"""Gates: per-endpoint caps, a global budget, fairness, deferral and overflow parking."""

from __future__ import annotations

import random

from services.dispatcher.gates import Gates
from services.dispatcher.model import Pending
from services.dispatcher.offsets import Ticket
from shared.core.delivery_message import DeliveryMessage


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def pending(endpoint_id: str, n: int, partition: str = "p0") -> Pending:
    msg = DeliveryMessage(f"dlv_{endpoint_id}_{n}", f"evt_{n}", endpoint_id, "acct", None, None)
    return Pending(Ticket(partition, n, 1), msg)


def gates(concurrency: int = 100, endpoint_concurrency: int = 64, waiting: int = 1000,
          memory_wait_s: float = 1000.0, clock: Clock | None = None) -> Gates:
    return Gates(concurrency, endpoint_concurrency, waiting, memory_wait_s=memory_wait_s,
                 clock=clock or Clock(), rng=random.Random(7))


def test_one_endpoint_never_takes_more_than_its_cap() -> None:
    g = gates()
    for n in range(30):
        g.add(pending("slow", n))
    g.add(pending("fast", 0))
    taken = g.take(500)
    by_endpoint = [p.message.endpoint_id for p in taken if p.park_s is None]
    assert by_endpoint.count("slow") == 10  # default max_in_flight until learned
    assert by_endpoint.count("fast") == 1
    assert g.claiming == 11 and g.waiting == 20


def test_learned_limits_and_the_process_cap_apply() -> None:
    g = gates(endpoint_concurrency=4)
    g.add(pending("a", 0))
    g.learn("a", max_in_flight=1000, rate_limit_per_s=None)
    for n in range(1, 10):
        g.add(pending("a", n))
    assert len([p for p in g.take(500) if p.park_s is None]) == 4


def test_global_budget_is_shared_round_robin() -> None:
    g = gates(concurrency=4)
    for endpoint in ("a", "b", "c", "d"):
        for n in range(5):
            g.add(pending(endpoint, n))
    taken = g.take(500)
    assert len(taken) == 4
    assert len({p.message.endpoint_id for p in taken}) >= 2


def test_started_and_finished_free_the_slot() -> None:
    g = gates()
    for n in range(11):
        g.add(pending("a", n))
    taken = g.take(500)
    for p in taken:
        g.started(p)
    assert g.take(500) == []  # cap of 10 in flight
    g.finished("a", 0.2)
    assert len(g.take(500)) == 1
    assert g.in_flight_by_endpoint() == {"a": 9}


def test_deferred_work_waits_in_front_until_its_time() -> None:
    clock = Clock()
    g = gates(clock=clock)
    g.add(pending("a", 0))
    g.add(pending("a", 1))
    first, second = g.take(500)
    g.settled(second)
    g.defer(first, 0.5)
    assert g.take(500) == []
    assert g.next_ready_in() == 0.5
    clock.now += 0.5
    again = g.take(500)
    assert [p.message.delivery_id for p in again] == [first.message.delivery_id]


def test_overflow_is_parked_in_proportion_to_throughput() -> None:
    g = gates(memory_wait_s=1000.0)
    g.add(pending("a", 0))
    g.learn("a", max_in_flight=2, rate_limit_per_s=2)
    for n in range(1, 40):
        g.add(pending("a", n))
    taken = g.take(500)
    parked = [p for p in taken if p.park_s is not None]
    claiming = [p for p in taken if p.park_s is None]
    assert len(claiming) == 2
    assert len(parked) == 40 - 2 - 16  # keeps max(2 x cap, 16) waiting
    assert all(p.park_s is not None and p.park_s >= 0.5 for p in parked)
    # the newest are parked, each roughly when its turn would come at 2/s
    assert max(p.park_s or 0 for p in parked) >= 39 / 2 * 0.9
    assert g.claiming == 2 and g.waiting == 16
    for p in parked:
        g.settled(p)  # parking does not count as claiming
    assert g.claiming == 2


def test_memory_wait_bounds_what_a_rate_limited_endpoint_holds() -> None:
    g = gates(memory_wait_s=2.0)
    g.add(pending("a", 0))
    g.learn("a", max_in_flight=10, rate_limit_per_s=3)
    assert g.waiting_limit(g.gate("a")) == 6


def test_drop_removes_waiting_work_of_revoked_partitions() -> None:
    g = gates(endpoint_concurrency=1)
    g.add(pending("a", 0, "p0"))
    g.add(pending("a", 1, "p1"))
    g.add(pending("a", 2, "p0"))
    g.take(500)  # takes one (cap 1)
    dropped = g.drop({"p0"})
    assert [p.message.delivery_id for p in dropped] == ["dlv_a_2"]
    assert g.waiting == 1
    assert len(g.drop(None)) == 1 and g.waiting == 0
