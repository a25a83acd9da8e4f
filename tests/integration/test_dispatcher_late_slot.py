"""A rate-limited send that would leave too late after its slot is given up, not sent.

The real pipeline (claim, attempt task, outcome writer) on the embedded Postgres and broker,
in this test's event loop. The endpoint's next free slot is put 0.4 s ahead; once the
delivery is claimed (leased, its task asleep until the slot), the test blocks the event loop
for 0.6 s, as a loaded machine does. The task wakes 0.2 s past its slot, beyond the 49 ms
tolerance: it sends nothing, ends its lease in Postgres, and the delivery is claimed again
with a new slot, one spacing later, and sent once. When the delivery was a half-open
circuit's probe, giving the slot up ends the probe too, so the next claim probes at once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import datetime, timedelta

import pytest

from services.dispatcher.rate_slots import slot_spacing_us
from services.dispatcher.settings import load_dispatcher_settings
from shared.core.delivery_message import DeliveryMessage
from tests.conftest import ServiceEnvFactory
from tests.support.dispatch import FAST_ENV
from tests.support.pipeline_rig import pipeline_rig
from tests.support.receiver import Receiver

OWNER = "late-slot-test"
RATE = 2
STALL_S = 0.6


async def _until(check: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


@pytest.mark.parametrize("half_open", [False, True], ids=["plain", "probe"])
async def test_a_send_stalled_past_its_slot_is_given_up_and_claimed_again(
        database_url: str, kafka_bootstrap: str, topic_prefix: str,
        service_env: ServiceEnvFactory, half_open: bool) -> None:
    settings = load_dispatcher_settings(service_env(**FAST_ENV))
    async with (pipeline_rig(database_url, kafka_bootstrap, topic_prefix, settings,
                             OWNER) as rig, Receiver() as rx):
        pool, seed, metrics, pipeline = rig.pool, rig.seed, rig.metrics, rig.pipeline
        ep = await seed.endpoint(rx.url("/rated"), rate_limit_per_s=RATE)
        event = await seed.event([ep], publish=False)
        delivery_id = event.delivery_ids[ep.id]
        # half-open: 5 failures, the circuit's cool-off just over
        first_slot: datetime = await pool.fetchval(
            "INSERT INTO endpoint_health (endpoint_id, rate_next_free_at,"
            " consecutive_failures, circuit_open_until) VALUES ($1,"
            " now() + interval '0.4 seconds', $2, CASE WHEN $2 > 0 THEN now() END)"
            " ON CONFLICT (endpoint_id) DO UPDATE SET"
            " rate_next_free_at = excluded.rate_next_free_at"
            " RETURNING rate_next_free_at", ep.id, 5 if half_open else 0)
        updated_at = await pool.fetchval("SELECT updated_at FROM deliveries WHERE id = $1",
                                         delivery_id)
        rig.start()
        ticket = pipeline.tracker.track("p", 0)  # as the consumer does per message
        pipeline.accept(ticket, DeliveryMessage(
            delivery_id, event.id, ep.id, ep.account_id, None, None))
        await _until(lambda: pipeline.gates.in_flight == 1)
        owner = await pool.fetchval("SELECT lease_owner FROM deliveries WHERE id = $1",
                                    delivery_id)
        assert owner == OWNER
        probe_until = await pool.fetchval("SELECT probe_until FROM endpoint_health"
                                          " WHERE endpoint_id = $1", ep.id)
        assert (probe_until is not None) is half_open
        assert await pool.fetchval("SELECT rate_next_free_at FROM endpoint_health"
                                   " WHERE endpoint_id = $1", ep.id) > first_slot

        # the event loop stalls past the slot and its tolerance, as on a loaded machine
        time.sleep(STALL_S)  # noqa: ASYNC251 (the stall is the point)

        def missed() -> float:
            value = metrics.registry.get_sample_value("postwire_rate_slot_missed_total")
            return value or 0.0

        await _until(lambda: missed() >= 1)
        row = await pool.fetchrow(
            "SELECT d.updated_at, (SELECT count(*) FROM attempts a"
            " WHERE a.delivery_id = d.id) AS attempts FROM deliveries d WHERE d.id = $1",
            delivery_id)
        if row["attempts"] == 0:   # not yet sent at its new slot: only the release wrote
            assert row["updated_at"] == updated_at, "the release keeps its queueing time"
        await rx.wait_for(lambda: len(rx.requests) >= 1, timeout_s=10)
        await _until(lambda: pipeline.gates.in_flight == 0 and not pipeline.waiting)
        assert missed() >= 1, "the late slot was given up"
        await asyncio.sleep(0.3)  # nothing else is on its way
        assert len(rx.requests) == 1, "sent once, at its new slot"
        rows = await pool.fetch("SELECT started_at FROM attempts WHERE delivery_id = $1",
                                delivery_id)
        assert len(rows) == 1
        # the first slot was never used: the send kept the next one, a spacing later
        assert rows[0]["started_at"] >= first_slot + timedelta(
            microseconds=slot_spacing_us(RATE))
        status = await pool.fetchval("SELECT status FROM deliveries WHERE id = $1",
                                     delivery_id)
        assert status == "succeeded"
        assert pipeline.tracker.committable() == {"p": 1}, "its offset may be committed"
        if half_open:
            health = await pool.fetchrow("SELECT consecutive_failures, probe_until"
                                         " FROM endpoint_health WHERE endpoint_id = $1",
                                         ep.id)
            assert health["consecutive_failures"] == 0 and health["probe_until"] is None
