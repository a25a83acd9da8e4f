"""End to end: ordering per (endpoint, ordering key), isolation and per-endpoint limits.

- 50 events on one key arrive strictly in order while one of them fails twice; another key of
  the same endpoint keeps flowing during that retry.
- A hanging endpoint beside a healthy one: the healthy one's p95 accept-to-receive latency
  stays under 1 s.
- ``max_in_flight`` and ``rate_limit_per_s`` as observed at the receiver.
"""

from __future__ import annotations

import asyncio
import statistics
from collections.abc import AsyncIterator

import pytest_asyncio

from tests.support.dispatch import DispatcherFactory, Seeder
from tests.support.receiver import Received, Receiver, Reply


@pytest_asyncio.fixture(scope="module")
async def rx() -> AsyncIterator[Receiver]:
    async with Receiver() as receiver:
        yield receiver


@pytest_asyncio.fixture(scope="module", autouse=True)
async def dispatcher(dispatchers: DispatcherFactory) -> None:
    await dispatchers.start()


def _key_and_n(r: Received) -> tuple[str, int]:
    data = r.json()["data"]
    return data["key"], data["n"]


async def test_ordering_key_holds_through_retries_and_other_key_flows(seeder: Seeder,
                                                                      rx: Receiver) -> None:
    failures = {"left": 2}

    def responder(r: Received) -> Reply | None:
        if _key_and_n(r) == ("A", 10) and failures["left"] > 0:
            failures["left"] -= 1
            return Reply(500)
        return Reply(200)

    rx.respond_with("/ordered", responder)
    ep = await seeder.endpoint(rx.url("/ordered"))
    a_events = [await seeder.event([ep], ordering_key="A", data={"key": "A", "n": n})
                for n in range(50)]
    await rx.wait_for(lambda: any(_key_and_n(r) == ("A", 10)
                                  for r in rx.requests_for("/ordered")), timeout_s=20)
    b_events = [await seeder.event([ep], ordering_key="B", data={"key": "B", "n": n})
                for n in range(10)]
    ids = [e.delivery_ids[ep.id] for e in a_events + b_events]
    await seeder.wait_status(ids, {"succeeded"}, 60)

    reqs = rx.requests_for("/ordered")
    a_seq = [n for key, n in map(_key_and_n, reqs) if key == "A"]
    assert a_seq == [*range(11), 10, 10, *range(11, 50)]
    b_seq = [n for key, n in map(_key_and_n, reqs) if key == "B"]
    assert b_seq == list(range(10))
    a10 = [r.at for r in reqs if _key_and_n(r) == ("A", 10)]
    assert any(a10[0] < r.at < a10[-1] for r in reqs if _key_and_n(r)[0] == "B"), \
        "key B must flow while key A waits for its retry"


async def test_hanging_endpoint_does_not_slow_a_healthy_one(seeder: Seeder,
                                                            rx: Receiver) -> None:
    rx.program("/hang", [], default=Reply(200, delay_s=30))
    hanging = await seeder.endpoint(rx.url("/hang"), max_in_flight=50)
    healthy = await seeder.endpoint(rx.url("/healthy"))
    for n in range(60):
        await seeder.event([hanging], data={"n": n})
    accepted: dict[str, float] = {}
    for n in range(40):
        event = await seeder.event([healthy], data={"n": n})
        accepted[event.id] = event.accepted_at
        await asyncio.sleep(0.05)
    await rx.wait_for(lambda: len({r.webhook_id for r in rx.requests_for("/healthy")}) >= 40,
                      timeout_s=30)
    first_seen: dict[str, float] = {}
    for r in rx.requests_for("/healthy"):
        first_seen.setdefault(r.webhook_id, r.at)
    latencies = sorted(first_seen[e] - accepted[e] for e in accepted)
    p95 = latencies[int(0.95 * len(latencies)) - 1]
    assert p95 < 1.0, f"healthy p95 {p95:.3f}s (median {statistics.median(latencies):.3f}s)"
    assert len(rx.requests_for("/hang")) >= 1


async def test_max_in_flight_is_never_exceeded(seeder: Seeder, rx: Receiver) -> None:
    rx.program("/slow", [], default=Reply(200, delay_s=0.3))
    ep = await seeder.endpoint(rx.url("/slow"), max_in_flight=3)
    events = [await seeder.event([ep], data={"n": n}) for n in range(15)]
    await seeder.wait_status([e.delivery_ids[ep.id] for e in events], {"succeeded"}, 30)
    assert rx.max_concurrent["/slow"] == 3
    assert len(rx.requests_for("/slow")) == 15


def max_in_window(times: list[float], window_s: float = 1.0) -> int:
    """The most arrivals within any half-open window of ``window_s`` seconds."""
    ordered = sorted(times)
    best, start = 0, 0
    for end, t in enumerate(ordered):
        while t - ordered[start] >= window_s:
            start += 1
        best = max(best, end - start + 1)
    return best


async def test_rate_limit_is_never_exceeded(seeder: Seeder, rx: Receiver) -> None:
    ep = await seeder.endpoint(rx.url("/rated"), rate_limit_per_s=5)
    events = [await seeder.event([ep], data={"n": n}) for n in range(16)]
    await seeder.wait_status([e.delivery_ids[ep.id] for e in events], {"succeeded"}, 30)
    times = [r.at for r in rx.requests_for("/rated")]
    assert len(times) == 16
    assert max_in_window(times) <= 5
    assert max(times) - min(times) >= 2.8  # 16 sends at 5/s need three seconds
