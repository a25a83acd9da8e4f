"""Claim, outcome, scheduler and sweeper statements against the real embedded Postgres.

Two ClaimStores stand for two dispatcher processes: the limits must hold across them.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime

import asyncpg
import pytest
import pytest_asyncio

from services.dispatcher.claim_plan import RATE_SAFETY, ClaimConfig
from services.dispatcher.claims import ClaimResult, ClaimStore
from services.dispatcher.metrics import DispatcherMetrics
from services.dispatcher.model import Claimed, Finished, Pending
from services.dispatcher.offsets import Ticket
from services.dispatcher.outcome_sql import record_plain_successes
from services.dispatcher.outcomes import GENERIC_PLAN_MAX_BATCH, OutcomeWriter
from services.dispatcher.scheduler import Republisher
from shared.adapters.kafka.publisher import Message
from shared.adapters.pg.pool import create_pool
from shared.core.backoff import BackoffPolicy
from shared.core.decision import AttemptResult, Dead, Decision, RetryAt, Succeeded
from shared.core.delivery_message import DeliveryMessage, decode_delivery_message
from tests.support.dispatch import Endpoint, Event, Seeder

CFG = ClaimConfig(first_delay_s=0.0, lease_s=5.0, rate_horizon_s=1.0)


@pytest_asyncio.fixture(scope="module")
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    p = await asyncpg.create_pool(database_url, min_size=2, max_size=8)
    yield p
    await p.close()


def requests(events: Sequence[Event], ep: Endpoint) -> list[Pending]:
    out = []
    for n, event in enumerate(events):
        msg = DeliveryMessage(event.delivery_ids[ep.id], event.id, ep.id, ep.account_id,
                              None, None)
        out.append(Pending(Ticket("p", n, 1), msg))
    return out


class Sink:
    """Captures what a component would publish after its commit."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.recorded: list[Finished] = []

    def publish(self, _ids: list[int], messages: list[Message]) -> None:
        self.messages.extend(messages)

    def on_recorded(self, batch: Sequence[Finished]) -> None:
        self.recorded.extend(batch)


async def record(pool: asyncpg.Pool, owner: str, items: list[tuple[Claimed, AttemptResult,
                                                                    Decision]]) -> Sink:
    sink = Sink()
    writer = OutcomeWriter(pool, owner, BackoffPolicy(), DispatcherMetrics(), sink.publish,
                           sink.on_recorded)
    writer.start()
    for claimed, result, decision in items:
        writer.submit(Finished(claimed, result, decision, datetime.now(UTC)))
    assert await writer.drain(10)
    await writer.stop()
    return sink


async def test_max_in_flight_holds_across_two_claimers(pool: asyncpg.Pool,
                                                       seed: Seeder) -> None:
    ep = await seed.endpoint("http://x.test/", max_in_flight=5)
    events = [await seed.event([ep], publish=False) for _ in range(20)]
    one, two = ClaimStore(pool, "one", CFG), ClaimStore(pool, "two", CFG)
    results: tuple[ClaimResult, ClaimResult] = await asyncio.gather(one.claim(requests(events, ep)),
                                                      two.claim(requests(events, ep)))
    claimed = [c.delivery_id for r in results for c in r.claimed]
    assert len(claimed) == 5 and len(set(claimed)) == 5
    leased = await pool.fetchval(
        "SELECT count(*) FROM deliveries WHERE endpoint_id = $1 AND lease_until > now()", ep.id)
    assert leased == 5
    assert all(len(r.claimed) + len(r.settled) + len(r.deferred) == 20 for r in results)


async def test_rate_slots_are_shared_across_two_claimers(pool: asyncpg.Pool,
                                                         seed: Seeder) -> None:
    ep = await seed.endpoint("http://x.test/", rate_limit_per_s=2)
    events = [await seed.event([ep], publish=False) for _ in range(6)]
    reqs = requests(events, ep)
    one, two = ClaimStore(pool, "one", CFG), ClaimStore(pool, "two", CFG)
    results = await asyncio.gather(one.claim(reqs[:3]), two.claim(reqs[3:]))
    delays = sorted(c.send_at_s for r in results for c in r.claimed)
    assert len(delays) == 2  # slots at 0 s and 0.525 s; the next is beyond the 1 s horizon
    assert delays[1] - delays[0] >= RATE_SAFETY / 2 - 0.05


async def test_dead_letter_on_exhaustion_and_again_after_a_replay(pool: asyncpg.Pool,
                                                                  seed: Seeder) -> None:
    ep = await seed.endpoint("http://x.test/")
    event = await seed.event([ep], event_type="order.created", publish=False)
    store = ClaimStore(pool, "me", CFG, random.Random(1))
    (claimed,) = (await store.claim(requests([event], ep))).claimed
    sink = await record(pool, "me", [(claimed, AttemptResult(500), Dead("retries_exhausted"))])
    delivery_id = claimed.delivery_id
    first = await pool.fetchrow("SELECT * FROM dead_letters WHERE delivery_id = $1", delivery_id)
    assert (first["reason"], first["attempt_count"], first["type"]) == (
        "retries_exhausted", 1, "order.created")
    assert [m.topic for m in sink.messages] == ["deadletter"]
    # an operator replays it (as the admin service does), and it dies again
    await pool.execute("UPDATE deliveries SET status = 'pending', generation = generation + 1,"
                       " round_attempt_count = 0, next_attempt_at = now() WHERE id = $1",
                       delivery_id)
    await pool.execute("UPDATE dead_letters SET replay_count = 1 WHERE delivery_id = $1",
                       delivery_id)
    msg = requests([event], ep)[0]
    replayed = Pending(msg.ticket, replace(msg.message, generation=1))
    (again,) = (await store.claim([replayed])).claimed
    await record(pool, "me", [(again, AttemptResult(400), Dead("non_retryable_status"))])
    second = await pool.fetchrow("SELECT * FROM dead_letters WHERE delivery_id = $1",
                                 delivery_id)
    assert second["replay_count"] == 1 and second["seq"] > first["seq"]
    assert (second["reason"], second["attempt_count"]) == ("non_retryable_status", 2)
    attempts = await seed.attempts(delivery_id)
    assert [a["attempt"] for a in attempts] == [1, 2]


async def test_an_outcome_without_the_lease_records_the_attempt_only(pool: asyncpg.Pool,
                                                                     seed: Seeder) -> None:
    ep = await seed.endpoint("http://x.test/")
    event = await seed.event([ep], publish=False)
    (claimed,) = (await ClaimStore(pool, "me", CFG).claim(requests([event], ep))).claimed
    await pool.execute("UPDATE deliveries SET lease_owner = 'other' WHERE id = $1",
                       claimed.delivery_id)
    await record(pool, "me", [(claimed, AttemptResult(200), Succeeded())])
    row = await pool.fetchrow("SELECT * FROM deliveries WHERE id = $1", claimed.delivery_id)
    assert (row["status"], row["lease_owner"], row["attempt_count"]) == ("pending", "other", 1)
    # the retry round and the last_* fields belong to the owner: a late result moves none
    assert (row["round_attempt_count"], row["last_status_code"], row["last_attempt_at"]) == (
        0, None, None)
    assert len(await seed.attempts(claimed.delivery_id)) == 1


async def test_one_outcome_batch_mixes_owned_cancelled_and_lost_leases(pool: asyncpg.Pool,
                                                                        seed: Seeder) -> None:
    ep = await seed.endpoint("http://x.test/")
    events = [await seed.event([ep], publish=False) for _ in range(3)]
    owned, cancelled, lost = (await ClaimStore(pool, "me", CFG).claim(
        requests(events, ep))).claimed
    await pool.execute("UPDATE deliveries SET status = 'cancelled' WHERE id = $1",
                       cancelled.delivery_id)  # cancelled while in flight: lease still ours
    await pool.execute("UPDATE deliveries SET lease_owner = 'other' WHERE id = $1",
                       lost.delivery_id)
    await record(pool, "me", [(c, AttemptResult(200), Succeeded())
                              for c in (owned, cancelled, lost)])
    rows = {r["id"]: r for r in await pool.fetch(
        "SELECT id, status, lease_owner, lease_until, attempt_count, round_attempt_count,"
        " last_status_code FROM deliveries WHERE id = ANY($1::text[])",
        [owned.delivery_id, cancelled.delivery_id, lost.delivery_id])}
    def state(c: Claimed) -> tuple[object, ...]:
        r = rows[c.delivery_id]
        return (r["status"], r["lease_owner"], r["attempt_count"], r["round_attempt_count"],
                r["last_status_code"])
    assert state(owned) == ("succeeded", None, 1, 1, 200)
    assert state(cancelled) == ("cancelled", None, 1, 0, None)  # our lease is released
    assert state(lost) == ("pending", "other", 1, 0, None)      # the owner's lease is kept
    assert rows[cancelled.delivery_id]["lease_until"] is None
    for c in (owned, cancelled, lost):
        assert [a["attempt"] for a in await seed.attempts(c.delivery_id)] == [1]


async def test_plain_successes_commit_as_one_statement(database_url: str,
                                                        seed: Seeder) -> None:
    ep = await seed.endpoint("http://x.test/")
    events = [await seed.event([ep], publish=False) for _ in range(6)]
    queries: list[str] = []
    service_pool = await create_pool(database_url, min_size=1, max_size=1)  # the services' hooks
    try:
        async with service_pool.acquire() as conn:  # the pool's only connection, logged from now
            conn.add_query_logger(lambda logged: queries.append(logged.query))
        claimed = (await ClaimStore(service_pool, "me", CFG).claim(requests(events, ep))).claimed
        # the first batch also runs the driver's one-time type lookups on this connection
        await record(service_pool, "me", [(c, AttemptResult(200), Succeeded())
                                          for c in claimed[:3]])
        queries.clear()
        await record(service_pool, "me", [(c, AttemptResult(200), Succeeded())
                                          for c in claimed[3:]])
    finally:
        await service_pool.close()
    # no BEGIN, health read, COMMIT or release probe: the record statement is all
    assert len(queries) == 1 and "INSERT INTO attempts" in queries[0]
    rows = await seed.pool.fetch("SELECT status, lease_owner, attempt_count FROM deliveries"
                                 " WHERE id = ANY($1::text[])", [c.delivery_id for c in claimed])
    assert sorted(tuple(r) for r in rows) == [("succeeded", None, 1)] * 6


async def test_outcomes_record_through_a_generically_planning_pool(database_url: str,
                                                                    seed: Seeder) -> None:
    ep = await seed.endpoint("http://x.test/")
    events = [await seed.event([ep], publish=False) for _ in range(4)]
    (ok, retry, dead, late_ok) = (await ClaimStore(seed.pool, "me", CFG).claim(
        requests(events, ep))).claimed
    generic = await create_pool(database_url, min_size=1, max_size=1, generic_plans=True)
    try:
        assert await generic.fetchval("SHOW plan_cache_mode") == "force_generic_plan"
        await record(generic, "me", [(ok, AttemptResult(200), Succeeded())])  # plain
        await record(generic, "me", [  # a failure changes health: the full transaction
            (retry, AttemptResult(503), RetryAt(datetime.now(UTC), 30.0)),
            (dead, AttemptResult(400), Dead("non_retryable_status"))])
        await record(generic, "me", [(late_ok, AttemptResult(200), Succeeded())])  # not clean
    finally:
        await generic.close()
    statuses = dict(await seed.pool.fetch(
        "SELECT id, status FROM deliveries WHERE event_id = ANY($1::text[])",
        [e.id for e in events]))
    assert [statuses[c.delivery_id] for c in (ok, retry, dead, late_ok)] == [
        "succeeded", "retrying", "dead", "succeeded"]
    health = await seed.pool.fetchrow(
        "SELECT consecutive_failures FROM endpoint_health WHERE endpoint_id = $1", ep.id)
    assert health["consecutive_failures"] == 0  # the last success reset it


async def test_small_batches_record_on_the_generic_pool_and_large_ones_on_the_main_pool(
        database_url: str, seed: Seeder) -> None:
    ep = await seed.endpoint("http://x.test/", max_in_flight=1000)
    size = GENERIC_PLAN_MAX_BATCH + 1
    events = [await seed.event([ep], publish=False) for _ in range(size + 3)]
    claimed = (await ClaimStore(seed.pool, "me", CFG).claim(requests(events, ep))).claimed
    seen: dict[str, list[int]] = {"main": [], "small": []}
    pools = {name: await create_pool(database_url, min_size=1, max_size=1,
                                     generic_plans=name == "small") for name in seen}
    try:
        for name, p in pools.items():
            async with p.acquire() as conn:
                conn.add_query_logger(lambda logged, name=name: seen[name].append(
                    len(logged.args[0])) if "INSERT INTO attempts" in logged.query else None)
        sink = Sink()
        writer = OutcomeWriter(pools["main"], "me", BackoffPolicy(), DispatcherMetrics(),
                               sink.publish, sink.on_recorded, batch_max=1000,
                               small_batch_pool=pools["small"])
        writer.start()
        for batch in (claimed[:3], claimed[3:]):
            for c in batch:  # submitted at once: one batch each
                writer.submit(Finished(c, AttemptResult(200), Succeeded(), datetime.now(UTC)))
            assert await writer.drain(10)
        await writer.stop()
    finally:
        for p in pools.values():
            await p.close()
    assert seen == {"small": [3], "main": [size]}
    assert len(sink.recorded) == size + 3


async def test_plain_successes_of_a_recovering_endpoint_reset_its_health(
        pool: asyncpg.Pool, seed: Seeder) -> None:
    ep = await seed.endpoint("http://x.test/")
    event = await seed.event([ep], publish=False)
    (claimed,) = (await ClaimStore(pool, "me", CFG).claim(requests([event], ep))).claimed
    await pool.execute(
        "UPDATE endpoint_health SET consecutive_failures = 2, failing_since = now(),"
        " circuit_open_until = now() - interval '1 second' WHERE endpoint_id = $1", ep.id)
    item = Finished(claimed, AttemptResult(200), Succeeded(), datetime.now(UTC))
    async with pool.acquire() as conn:  # the one-statement form refuses and writes nothing
        assert await record_plain_successes(conn, [item], "me") is None
    assert await seed.attempts(claimed.delivery_id) == []
    assert await pool.fetchval("SELECT lease_owner FROM deliveries WHERE id = $1",
                               claimed.delivery_id) == "me"
    await record(pool, "me", [(claimed, AttemptResult(200), Succeeded())])
    health = await pool.fetchrow("SELECT * FROM endpoint_health WHERE endpoint_id = $1", ep.id)
    assert (health["consecutive_failures"], health["failing_since"],
            health["circuit_open_until"]) == (0, None, None)
    assert await pool.fetchval("SELECT status FROM deliveries WHERE id = $1",
                               claimed.delivery_id) == "succeeded"
    assert [a["attempt"] for a in await seed.attempts(claimed.delivery_id)] == [1]


async def test_finishing_a_key_head_announces_the_next(pool: asyncpg.Pool,
                                                       seed: Seeder) -> None:
    ep = await seed.endpoint("http://x.test/")
    events = [await seed.event([ep], ordering_key="k", publish=False) for _ in range(3)]
    reqs = requests(events, ep)
    store = ClaimStore(pool, "me", CFG)
    result = await store.claim(reqs)
    assert [c.delivery_id for c in result.claimed] == [events[0].delivery_ids[ep.id]]
    assert {label for _, label in result.settled} == {"skipped_blocked"}
    sink = await record(pool, "me", [(result.claimed[0], AttemptResult(204), Succeeded())])
    announced = [decode_delivery_message(m.value) for m in sink.messages]
    assert [m.delivery_id for m in announced] == [events[1].delivery_ids[ep.id]]
    assert announced[0].sequence == 2 and sink.messages[0].key == ep.id.encode()


async def test_scheduler_announces_due_retries_once(pool: asyncpg.Pool, seed: Seeder) -> None:
    ep = await seed.endpoint("http://x.test/")
    event = await seed.event([ep], publish=False)
    (claimed,) = (await ClaimStore(pool, "me", CFG).claim(requests([event], ep))).claimed
    await record(pool, "me", [(claimed, AttemptResult(503), RetryAt(datetime.now(UTC), 0.5))])
    sink = Sink()
    scheduler = Republisher(pool, sink.publish, DispatcherMetrics(), scheduler_interval_s=1,
                            sweep_interval_s=1, sweep_stale_s=60)
    assert await scheduler.schedule_once() == 0  # not due yet
    await asyncio.sleep(0.6)
    await scheduler.schedule_once()
    assert [decode_delivery_message(m.value).delivery_id for m in sink.messages] == [
        claimed.delivery_id]
    assert await scheduler.schedule_once() == 0


async def test_sweeper_announces_expired_leases(pool: asyncpg.Pool, seed: Seeder) -> None:
    ep = await seed.endpoint("http://x.test/")
    event = await seed.event([ep], publish=False)
    (claimed,) = (await ClaimStore(pool, "crashed", CFG).claim(requests([event], ep))).claimed
    await pool.execute("UPDATE deliveries SET lease_until = now() - interval '1 second'"
                       " WHERE id = $1", claimed.delivery_id)
    sink = Sink()
    sweeper = Republisher(pool, sink.publish, DispatcherMetrics(), scheduler_interval_s=1,
                          sweep_interval_s=1, sweep_stale_s=60)
    await sweeper.sweep_once()
    assert claimed.delivery_id in {decode_delivery_message(m.value).delivery_id
                                   for m in sink.messages}
    sink.messages.clear()
    await sweeper.sweep_once()
    assert claimed.delivery_id not in {decode_delivery_message(m.value).delivery_id
                                       for m in sink.messages}


async def test_outcomes_gather_while_a_batch_records_and_none_after_stop(
        pool: asyncpg.Pool, seed: Seeder, caplog: pytest.LogCaptureFixture) -> None:
    ep = await seed.endpoint("http://x.test/")
    events = [await seed.event([ep], publish=False) for _ in range(8)]
    first, *rest, late = (await ClaimStore(pool, "me", CFG).claim(requests(events, ep))).claimed
    batches: list[list[str]] = []
    sink = Sink()
    writer = OutcomeWriter(pool, "me", BackoffPolicy(), DispatcherMetrics(), sink.publish,
                           lambda batch: batches.append([f.claimed.delivery_id for f in batch]),
                           batch_max=100, batch_wait_ms=0)
    writer.start()
    async with pool.acquire() as blocker, blocker.transaction():
        await blocker.execute("SELECT 1 FROM deliveries WHERE id = $1 FOR UPDATE",
                              first.delivery_id)
        writer.submit(Finished(first, AttemptResult(200), Succeeded(), datetime.now(UTC)))
        await asyncio.sleep(0.1)  # its transaction now waits for the row lock
        for claimed in rest:
            writer.submit(Finished(claimed, AttemptResult(200), Succeeded(), datetime.now(UTC)))
        await asyncio.sleep(0.05)
        assert batches == []
    assert await writer.drain(10)
    assert batches == [[first.delivery_id], [c.delivery_id for c in rest]]
    await writer.stop()
    with caplog.at_level(logging.WARNING, logger="services.dispatcher.outcomes"):
        writer.submit(Finished(late, AttemptResult(200), Succeeded(), datetime.now(UTC)))
    assert any(getattr(r, "pw", {}).get("delivery_id") == late.delivery_id for r in caplog.records)
    statuses = dict(await pool.fetch("SELECT id, status FROM deliveries WHERE event_id = ANY($1)",
                                     [e.id for e in events]))
    assert statuses == {**{c.delivery_id: "succeeded" for c in (first, *rest)},
                        late.delivery_id: "pending"}


async def test_claims_report_the_endpoints_leases_across_claimers(pool: asyncpg.Pool,
                                                                   seed: Seeder) -> None:
    """What the gates pace parking by: each claim reports the endpoint's unexpired leases,
    every claimer's included, right after it leased."""
    ep = await seed.endpoint("http://x.test/", max_in_flight=3)
    events = [await seed.event([ep], publish=False) for _ in range(5)]
    reqs = requests(events, ep)
    first = await ClaimStore(pool, "one", CFG).claim(reqs[:2])
    assert first.endpoint_leases == {ep.id: 2}
    second = await ClaimStore(pool, "two", CFG).claim(reqs[2:])
    assert len(second.claimed) == 1 and second.endpoint_leases == {ep.id: 3}
