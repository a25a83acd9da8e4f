"""End to end: two dispatcher processes sharing the consumer group.

Work spreads over both, nothing is delivered twice in normal operation, ordering keys hold
across the rebalance that the second process causes, and the per-endpoint limits hold across
processes (they live in Postgres, not in either process). Deliveries are keyed by endpoint, so
work spreads by endpoint: the test has endpoints on every partition, so whichever partitions
each process owns, both have work.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator

import pytest_asyncio

from shared.core.wakeup import partition_of
from tests.e2e.test_dispatch_ordering import max_in_window
from tests.support.dispatch import (
    DispatcherFactory,
    Seeder,
    metric,
    poll,
)
from tests.support.receiver import Receiver, Reply

PARTITIONS = 4   # of the deliveries topic in these tests (tests/support/dispatch.py)


@pytest_asyncio.fixture(scope="module")
async def rx() -> AsyncIterator[Receiver]:
    async with Receiver() as receiver:
        yield receiver


async def test_two_dispatchers_share_work_keep_order_and_limits(
        seeder: Seeder, rx: Receiver, dispatchers: DispatcherFactory) -> None:
    rx.program("/slow", [], default=Reply(200, delay_s=0.2))
    limited = await seeder.endpoint(rx.url("/slow"), max_in_flight=4)
    rated = await seeder.endpoint(rx.url("/rated"), rate_limit_per_s=4)
    keyed = await seeder.endpoint(rx.url("/keyed"))
    await dispatchers.start()
    events = [await seeder.event([limited], data={"n": n}) for n in range(40)]
    events += [await seeder.event([keyed], ordering_key=f"k{n % 3}", data={"n": n})
               for n in range(30)]
    second = await dispatchers.start()   # joins mid-flow: a rebalance while work is in flight
    first = dispatchers.started[0]

    async def assigned() -> tuple[float, float]:
        return (await metric(first, "postwire_assigned_partitions"),
                await metric(second, "postwire_assigned_partitions"))

    await poll(assigned, lambda a: a[0] > 0 and a[1] > 0 and sum(a) == 4, 30)
    events += [await seeder.event([rated], data={"n": n}) for n in range(12)]
    spread = [await seeder.endpoint(rx.url("/spread"))]   # endpoints on every partition
    while len({partition_of(ep.id.encode(), PARTITIONS) for ep in spread}) < PARTITIONS:
        spread.append(await seeder.endpoint(rx.url("/spread"), account_id=spread[0].account_id))
    events += [await seeder.event([ep], data={"n": n}) for n, ep in enumerate(spread)]
    events += [await seeder.event([keyed], ordering_key=f"k{n % 3}", data={"n": n})
               for n in range(30, 60)]
    ids = [d for e in events for d in e.delivery_ids.values()]
    await seeder.wait_status(ids, {"succeeded"}, 60)

    assert rx.max_concurrent["/slow"] <= 4
    assert max_in_window([r.at for r in rx.requests_for("/rated")]) <= 4
    received = Counter(r.webhook_id for r in rx.requests)
    assert set(received) == {e.id for e in events}
    assert max(received.values()) == 1, "no duplicates without a crash"
    for key in ("k0", "k1", "k2"):
        seq = [r.json()["data"]["n"] for r in rx.requests_for("/keyed")
               if f"k{r.json()['data']['n'] % 3}" == key]
        assert seq == sorted(seq)
    for service in (first, second):
        assert await metric(service, "postwire_attempts_total") > 0, "both processes work"
    owners = await seeder.pool.fetchval(
        "SELECT count(DISTINCT lease_owner) FROM deliveries WHERE lease_owner IS NOT NULL")
    assert owners == 0, "every lease is released once its outcome is recorded"
