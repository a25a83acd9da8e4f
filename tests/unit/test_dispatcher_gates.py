"""Gates: per-endpoint caps, a global budget, fairness, deferral and overflow parking."""

from __future__ import annotations

import random

from services.dispatcher.gates import Gates, claim_shard_key
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
          memory_wait_s: float = 1000.0, clock: Clock | None = None,
          max_waiting: int = 20000) -> Gates:
    return Gates(concurrency, endpoint_concurrency, waiting, memory_wait_s=memory_wait_s,
                 clock=clock or Clock(), rng=random.Random(7), max_waiting=max_waiting)


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
    g.finished("a")
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


def test_a_slow_endpoint_keeps_what_it_works_off_and_parks_the_rest() -> None:
    clock = Clock()
    g = gates(memory_wait_s=8.0, clock=clock)
    g.add(pending("a", 0))
    g.learn("a", max_in_flight=2, rate_limit_per_s=None)
    for n in range(1, 40):
        g.add(pending("a", n))
    first = g.take(500)
    assert len(first) == 2 and all(p.park_s is None for p in first)  # fresh: nothing parked
    for p in first:
        g.started(p)
    gate = g.gate("a")
    gate.since = clock.now - 60.0
    gate.done_at.extend([clock.now] * 20)  # it managed 2/s over the last 10 s
    clock.now += 9.0                        # and its oldest message has waited 9 s > 8 s
    parked = g.take(500)
    assert all(p.park_s is not None for p in parked)
    assert len(parked) == 38 - 16           # keeps 2/s x 8 s
    assert max(p.park_s or 0 for p in parked) >= 40 / 2 * 0.9
    assert g.waiting == 16 and g.claiming == 0
    for p in parked:
        g.settled(p)                        # parking never counted as claiming
    assert g.claiming == 0


def test_a_burst_waits_in_memory_while_memory_is_free() -> None:
    g = gates(waiting=5, max_waiting=100)
    g.add(pending("a", 0))
    g.learn("a", max_in_flight=2, rate_limit_per_s=None)
    for n in range(1, 60):
        g.add(pending("a", n))
    taken = g.take(500)
    assert [p.message.delivery_id for p in taken] == ["dlv_a_0", "dlv_a_1"]  # nothing parked
    assert g.waiting == 58 and not g.full


def test_when_memory_is_full_a_lagging_endpoint_keeps_its_fair_share() -> None:
    clock = Clock()
    g = gates(waiting=2, max_waiting=12, memory_wait_s=10.0, clock=clock)
    g.add(pending("a", 0))
    g.add(pending("b", 0))
    g.learn("a", max_in_flight=2, rate_limit_per_s=None)
    g.learn("b", max_in_flight=1, rate_limit_per_s=None)
    for n in range(1, 14):
        g.add(pending("a", n))
    for n in range(1, 6):
        g.add(pending("b", n))
    g.gate("a").since = clock.now - 60.0
    g.gate("a").done_at.extend([clock.now] * 3)  # 0.3/s: works off 3 in 10 s, not its 12
    g.gate("b").since = clock.now - 60.0
    g.gate("b").done_at.extend([clock.now] * 100)  # 10/s: its 5 go within 10 s
    taken = g.take(500)
    claiming = [p.message.delivery_id for p in taken if p.park_s is None]
    parked = [p.message.delivery_id for p in taken if p.park_s is not None]
    assert sorted(claiming) == ["dlv_a_0", "dlv_a_1", "dlv_b_0"]
    # 17 waiting >= 12: full; two busy endpoints share 12, so "a" keeps 6 and parks its newest,
    # while "b", which keeps up, keeps all of its own
    assert set(parked) == {f"dlv_a_{n}" for n in range(8, 14)}
    assert g.waiting == 11 and not g.full


def test_when_memory_is_full_endpoints_that_keep_up_park_nothing() -> None:
    clock = Clock()
    g = gates(waiting=2, max_waiting=20, memory_wait_s=10.0, clock=clock)
    for endpoint in ("a", "b"):
        for n in range(25):
            g.add(pending(endpoint, n))
        g.gate(endpoint).since = clock.now - 60.0
        g.gate(endpoint).done_at.extend([clock.now] * 50)  # 5/s: 50 in 10 s
    taken = g.take(500)
    assert all(p.park_s is None for p in taken)  # parking would speed nobody up
    assert len(taken) == 20 and g.waiting == 30 and g.full  # full: fetching waits instead


def test_without_a_measured_rate_nothing_is_parked_below_the_hard_cap() -> None:
    clock = Clock()
    g = gates(memory_wait_s=1.0, clock=clock)
    for n in range(30):
        g.add(pending("new", n))
    clock.now += 5.0  # waited long, but no attempt finished yet: no basis for parking
    assert all(p.park_s is None for p in g.take(500))


def test_a_fresh_queue_is_never_parked() -> None:
    g = gates(memory_wait_s=0.001)
    for n in range(100):
        g.add(pending("new", n))
    assert all(p.park_s is None for p in g.take(500))


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


def test_shards_split_endpoints_between_claim_workers() -> None:
    g = gates()
    endpoints = [f"ep_{n}" for n in range(20)]
    for endpoint in endpoints:
        g.add(pending(endpoint, 0))
    first = {p.message.endpoint_id for p in g.take(500, shards=(0,), of=2)}
    second = {p.message.endpoint_id for p in g.take(500, shards=(1,), of=2)}
    assert first and second and not first & second  # disjoint, and both get work
    assert first | second == set(endpoints)
    assert g.take(500, shards=(0,), of=2) == [] and g.waiting == 0


def test_a_take_of_several_shards_takes_their_endpoints_and_no_others() -> None:
    g = gates()
    endpoints = [f"ep_{n}" for n in range(40)]
    for endpoint in endpoints:
        g.add(pending(endpoint, 0))
    taken = {p.message.endpoint_id for p in g.take(500, shards=(0, 2), of=4)}
    assert taken == {e for e in endpoints if claim_shard_key(e) % 4 in (0, 2)}
    rest = {p.message.endpoint_id for p in g.take(500, shards=(1, 3), of=4)}
    assert rest == set(endpoints) - taken and g.waiting == 0


def test_when_memory_is_full_a_young_endpoint_is_not_judged_on_its_first_seconds() -> None:
    clock = Clock()
    g = gates(waiting=2, max_waiting=12, memory_wait_s=10.0, clock=clock)
    for n in range(30):
        g.add(pending("a", n))
    g.gate("a").done_at.extend([clock.now] * 3)  # 3 done in its first second: still ramping
    clock.now += 1.0
    taken = g.take(500)
    assert all(p.park_s is None for p in taken) and g.full


def _lagging(clock: Clock, leases: list[int], held_s: list[float]) -> Gates:
    """400 messages for an endpoint with max_in_flight 2 that this process completed at 2/s
    over the last 10 s, its oldest message waiting 9 s (> the 8 s memory wait); claims saw
    ``leases`` of the endpoint across all dispatchers, this process's leases were held
    ``held_s``."""
    g = gates(memory_wait_s=8.0, clock=clock)
    g.add(pending("a", 0))
    g.learn("a", max_in_flight=2, rate_limit_per_s=None)
    for n in range(1, 400):
        g.add(pending("a", n))
    for p in g.take(500):
        g.started(p)
    gate = g.gate("a")
    gate.since = clock.now - 60.0
    gate.done_at.extend([clock.now] * 20)
    for n in leases:
        g.learn("a", max_in_flight=2, rate_limit_per_s=None, leases=n)
    gate.held.extend((clock.now, h) for h in held_s)
    clock.now += 9.0
    return g


def test_a_park_is_paced_by_the_endpoint_across_dispatchers_not_by_this_process() -> None:
    """Three dispatchers share the endpoint: this one completes 2/s, but the claims saw its 2
    leases busy all the time, each held 0.125 s, so the endpoint completes 16/s. The excess
    parks at queue position / 16 s (about 25 s for the last), not / 2 (200 s)."""
    clock = Clock()
    g = _lagging(clock, leases=[2, 2, 2, 1, 2, 2, 2, 2], held_s=[0.125] * 10)
    gate = g.gate("a")
    pace = gate.pace(clock.now)
    assert pace is not None and 14.9 < pace < 15.1  # mean leases 1.875 / 0.125 s
    parked = g.take(500)
    assert all(p.park_s is not None for p in parked)
    assert len(parked) == 398 - int(pace * 8.0)          # keeps what it works off in 8 s
    longest = max(p.park_s or 0.0 for p in parked)
    assert 400 / pace * 0.9 <= longest <= 400 / pace * 1.1


def test_without_lease_figures_the_pace_is_this_process_own() -> None:
    clock = Clock()
    g = _lagging(clock, leases=[], held_s=[0.125] * 10)
    parked = g.take(500)
    assert len(parked) == 398 - 16
    assert max(p.park_s or 0.0 for p in parked) >= 400 / 2 * 0.9


def test_the_pace_is_never_below_what_this_process_completes() -> None:
    clock = Clock()
    g = _lagging(clock, leases=[1], held_s=[1.0])   # the figures say 1/s; it did 2/s itself
    assert g.gate("a").pace(clock.now) == 2.0


def test_lease_figures_older_than_the_window_are_forgotten() -> None:
    clock = Clock()
    g = _lagging(clock, leases=[2], held_s=[0.1])
    gate = g.gate("a")
    assert gate.endpoint_pace(clock.now) == 20.0
    assert gate.endpoint_pace(clock.now + 10.0) is None


def test_an_attempt_is_awaited_when_its_endpoint_has_requests_waiting() -> None:
    g = gates(endpoint_concurrency=1)
    g.add(pending("ep_a", 0))
    g.add(pending("ep_a", 1))
    (first,) = g.take(500)
    g.started(first)
    assert g.awaits_slot("ep_a")          # ep_a_1 waits for the one slot
    assert not g.awaits_slot("ep_b")      # unknown endpoint, nothing waits
    g.drop(None)
    assert not g.awaits_slot("ep_a")


def test_an_attempt_is_awaited_anywhere_when_the_process_is_at_its_concurrency() -> None:
    g = gates(concurrency=1)
    g.add(pending("ep_a", 0))
    g.add(pending("ep_b", 0))
    (first,) = g.take(500)
    g.started(first)
    assert g.awaits_slot(first.message.endpoint_id)   # the other endpoint waits for it
    g.finished(first.message.endpoint_id)
    assert not g.awaits_slot(first.message.endpoint_id)   # below the limit again
