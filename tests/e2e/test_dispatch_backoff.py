"""End to end: per-endpoint backoff as a whole (circuit) and auto-disable.

The dispatcher runs with a circuit that opens after 3 consecutive failures for 1 s, a long
fast schedule (so deliveries outlive the outage) and an auto-disable window of 4 s.
"""

from __future__ import annotations

import time
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
    await dispatchers.start(RETRY_SCHEDULE=",".join(["0"] + ["0.3"] * 14),
                            CIRCUIT_FAILURE_THRESHOLD="3", CIRCUIT_COOLOFF_S="1",
                            CIRCUIT_MAX_COOLOFF_S="1", ENDPOINT_DISABLE_AFTER_S="4")


async def test_failing_endpoint_is_backed_off_as_a_whole(seeder: Seeder, rx: Receiver) -> None:
    outage_ends = time.monotonic() + 2.0

    def responder(_: Received) -> Reply:
        return Reply(503) if time.monotonic() < outage_ends else Reply(200)

    rx.respond_with("/flaky", responder)
    ep = await seeder.endpoint(rx.url("/flaky"), max_in_flight=20)
    events = [await seeder.event([ep], data={"n": n}) for n in range(20)]
    ids = [e.delivery_ids[ep.id] for e in events]
    await seeder.wait_status(ids, {"succeeded"}, 30)
    failed = [r for r in rx.requests_for("/flaky") if r.status == 503]
    # Without a circuit: 20 deliveries retried every ~0.3 s for 2 s = ~130 requests.
    # With it: the first wave, then one probe per cool-off.
    assert len(failed) <= 20 + 4, len(failed)
    attempts = await seeder.pool.fetch(
        "SELECT attempt_count FROM deliveries WHERE id = ANY($1)", ids)
    assert max(a["attempt_count"] for a in attempts) <= 6, "parked turns are not attempts"
    health = await seeder.pool.fetchrow(
        "SELECT * FROM endpoint_health WHERE endpoint_id = $1", ep.id)
    assert health["consecutive_failures"] == 0 and health["circuit_open_until"] is None


async def test_endpoint_failing_for_the_window_is_disabled(seeder: Seeder,
                                                           rx: Receiver) -> None:
    rx.program("/dead", [], default=Reply(500))
    ep = await seeder.endpoint(rx.url("/dead"))
    first = await seeder.event([ep], ordering_key="k")
    second = await seeder.event([ep], ordering_key="k")
    ids = [first.delivery_ids[ep.id], second.delivery_ids[ep.id]]
    await seeder.wait_status(ids, {"dead"}, 30)
    endpoint = await seeder.pool.fetchrow("SELECT * FROM endpoints WHERE id = $1", ep.id)
    assert endpoint["enabled"] is False
    assert endpoint["disabled_reason"].startswith("failing_since_20")
    reasons = await seeder.pool.fetch(
        "SELECT reason FROM dead_letters WHERE delivery_id = ANY($1)", ids)
    assert {r["reason"] for r in reasons} == {"endpoint_disabled"}
    # work arriving for a disabled endpoint goes straight to the dead letters
    late = await seeder.event([ep])
    await seeder.wait_status(list(late.delivery_ids.values()), {"dead"}, 15)
    sent = len(rx.requests_for("/dead"))
    assert all(r.webhook_id != late.id for r in rx.requests_for("/dead"))
    assert sent >= 1
