"""Fault tests: kill -9 a dispatcher mid-flow, kill the broker mid-flow and bring it back
EMPTY, SIGTERM a dispatcher with attempts in flight. Each ends with a ledger check: every
accepted event reached every endpoint it was meant for (or is dead), and any repeat carried
the same ``webhook-id`` and the same body bytes.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import AsyncIterator, Sequence

import aiohttp
import pytest_asyncio

from deploy.embedded.services import ServiceProcess
from deploy.embedded.stack import EmbeddedStack
from tests.support.dispatch import (
    DispatcherFactory,
    Endpoint,
    Event,
    Seeder,
    metric,
    poll,
)
from tests.support.ledger import assert_ledger_balances
from tests.support.receiver import Receiver, Reply


@pytest_asyncio.fixture
async def rx() -> AsyncIterator[Receiver]:
    async with Receiver() as receiver:
        yield receiver


async def readiness(service: ServiceProcess) -> tuple[int, str]:
    """``GET /readyz``: the status and the reason (the error message when not ready)."""
    async with aiohttp.ClientSession() as session, \
            session.get(f"{service.base_url}/readyz") as response:
        body = await response.json()
    return response.status, body.get("error", {}).get("message", "")


async def ledger_check(seeder: Seeder, rx: Receiver, events: Sequence[Event],
                       endpoints: dict[str, Endpoint], timeout_s: float) -> dict[str, int]:
    """Wait until every delivery is final, then check the receiver's view of each. The
    receivers of these tests answer 2xx in the end, so every delivery must have succeeded
    (none may die of the fault), reached its endpoint, and every repeat be byte-identical.

    Then the platform's ledger must balance (tests.support.ledger). Returns how many
    requests each event id got (for duplicate statistics).
    """
    ids = [d for e in events for d in e.delivery_ids.values()]
    final = await seeder.wait_status(ids, {"succeeded", "dead"}, timeout_s)
    dead = [d for d, s in final.items() if s == "dead"]
    assert not dead, f"{len(dead)} deliveries died although their endpoint answers 2xx"
    by_event = {e.id: e for e in events}
    path_of = {ep.id: ep.url.split(str(rx.port), 1)[1] for ep in endpoints.values()}
    seen: dict[tuple[str, str], list[bytes]] = defaultdict(list)
    for r in rx.requests:
        assert r.webhook_id in by_event, f"unknown webhook-id {r.webhook_id}"
        seen[(r.path, r.webhook_id)].append(r.body)
    counts: dict[str, int] = defaultdict(int)
    for event in events:
        for endpoint_id, delivery_id in event.delivery_ids.items():
            bodies = seen.get((path_of[endpoint_id], event.id), [])
            counts[event.id] += len(bodies)
            assert bodies, f"{delivery_id} succeeded but never reached {endpoint_id}"
            assert all(b == event.body for b in bodies), "a repeat must be byte-identical"
    await assert_ledger_balances(seeder.pool)
    return counts


def first_arrivals_in_order(rx: Receiver, path: str) -> bool:
    firsts: list[int] = []
    for r in rx.requests_for(path):
        n = r.json()["data"]["n"]
        if n not in firsts:
            firsts.append(n)
    return firsts == sorted(firsts)


async def test_kill_9_dispatcher_mid_flow_loses_nothing(
        seeder: Seeder, rx: Receiver, dispatchers_per_test: DispatcherFactory) -> None:
    rx.program("/a", [], default=Reply(200, delay_s=0.05))
    rx.program("/b", [], default=Reply(200, delay_s=0.05))
    a = await seeder.endpoint(rx.url("/a"), max_in_flight=20)
    b = await seeder.endpoint(rx.url("/b"), account_id=a.account_id)
    keyed = await seeder.endpoint(rx.url("/keyed"), account_id=a.account_id)
    first = await dispatchers_per_test.start()
    second = await dispatchers_per_test.start()
    await poll(lambda: metric(second, "postwire_assigned_partitions"), lambda n: n > 0, 30)
    events: list[Event] = []
    for n in range(150):
        events.append(await seeder.event([a, b], data={"n": n}))
        if n % 3 == 0:
            events.append(await seeder.event([keyed], ordering_key="K", data={"n": n}))
        if n == 60:
            await asyncio.to_thread(first.kill)
    counts = await ledger_check(seeder, rx, events, {e.id: e for e in (a, b, keyed)}, 90)
    assert sum(counts.values()) >= sum(len(e.delivery_ids) for e in events)
    assert first_arrivals_in_order(rx, "/keyed")
    statuses = set((await seeder.statuses(
        [d for e in events for d in e.delivery_ids.values()])).values())
    assert statuses == {"succeeded"}


async def test_sigterm_drains_and_releases_then_another_dispatcher_finishes(
        seeder: Seeder, rx: Receiver, dispatchers_per_test: DispatcherFactory) -> None:
    rx.program("/slow", [], default=Reply(200, delay_s=1.0))
    ep = await seeder.endpoint(rx.url("/slow"), max_in_flight=5)
    service = await dispatchers_per_test.start(DISPATCHER_DRAIN_S="0.3")
    events = [await seeder.event([ep], data={"n": n}) for n in range(20)]
    await rx.wait_for(lambda: len(rx.requests_for("/slow")) >= 5, timeout_s=30)
    assert await asyncio.to_thread(service.stop) == 0
    leased = await seeder.pool.fetchval(
        "SELECT count(*) FROM deliveries WHERE endpoint_id = $1 AND lease_owner IS NOT NULL",
        ep.id)
    assert leased == 0, "a drained dispatcher leaves no lease behind"
    await dispatchers_per_test.start()
    await ledger_check(seeder, rx, events, {ep.id: ep}, 60)


async def test_postgres_restart_mid_flow_loses_nothing(
        stack: EmbeddedStack, seeder: Seeder, rx: Receiver,
        dispatchers_per_test: DispatcherFactory) -> None:
    rx.program("/pg", [Reply(503)], default=Reply(200, delay_s=0.2))
    ep = await seeder.endpoint(rx.url("/pg"), max_in_flight=2)
    await dispatchers_per_test.start()
    events = [await seeder.event([ep], data={"n": n}) for n in range(40)]
    await rx.wait_for(lambda: len(rx.requests_for("/pg")) >= 5, timeout_s=30)  # mid-flow
    await asyncio.to_thread(stack.postgres.restart)
    assert len({r.webhook_id for r in rx.requests_for("/pg")}) < 40, "restarted mid-flow"
    await seeder.pool.expire_connections()
    events += [await seeder.event([ep], data={"n": n}) for n in range(40, 60)]
    await ledger_check(seeder, rx, events, {ep.id: ep}, 60)


@pytest_asyncio.fixture
async def broker_restarted_after(stack: EmbeddedStack) -> AsyncIterator[EmbeddedStack]:
    """Restart the broker once more after the test (after its dispatchers stopped), so later
    test modules get a broker that never saw this test's topics re-created in a hurry."""
    yield stack
    await asyncio.to_thread(stack.broker.restart)


async def test_broker_killed_and_restarted_empty_loses_nothing(
        broker_restarted_after: EmbeddedStack, seeder: Seeder, rx: Receiver,
        dispatchers_per_test: DispatcherFactory) -> None:
    stack = broker_restarted_after
    rx.program("/x", [], default=Reply(200, delay_s=0.02))
    ep = await seeder.endpoint(rx.url("/x"))
    keyed = await seeder.endpoint(rx.url("/k"), account_id=ep.account_id)
    service = await dispatchers_per_test.start()
    events = [await seeder.event([ep], data={"n": n}) for n in range(30)]
    events += [await seeder.event([keyed], ordering_key="K", data={"n": n}) for n in range(10)]
    await rx.wait_for(lambda: len(rx.requests) >= 10, timeout_s=30)  # mid-flow
    assert await readiness(service) == (200, "")
    await asyncio.to_thread(stack.broker.kill)
    _, reason = await poll(lambda: readiness(service), lambda r: r[0] == 503, 15)
    assert reason.startswith("kafka:"), reason  # not ready, and it says why
    # accepted while the broker is down: left in the outbox, as ingest would
    events += [await seeder.event([ep], data={"n": n}, publish=False) for n in range(30, 50)]
    events += [await seeder.event([keyed], ordering_key="K", data={"n": n}, publish=False)
               for n in range(10, 20)]
    await asyncio.sleep(1.0)
    await asyncio.to_thread(stack.broker.restart)
    events += [await seeder.event([ep], data={"n": n}) for n in range(50, 70)]
    await ledger_check(seeder, rx, events, {ep.id: ep, keyed.id: keyed}, 90)
    await poll(lambda: readiness(service), lambda r: r == (200, ""), 15)  # ready again
    assert first_arrivals_in_order(rx, "/k")
