"""Light traffic shares transactions: a claim worker woken from idle gathers for
``POSTWIRE_DISPATCHER_CLAIM_LINGER_MS`` (when messages come often enough that company is
expected within it: at least one per linger over the last whole seconds) and then claims the
waiting messages of every claim shard nobody is claiming in one transaction; an outcome
nothing waits for lingers up to ``POSTWIRE_OUTCOME_LINGER_MS`` to share the outcome writer's
commit, while one that something waits for (the next delivery of its ordering key) is recorded
after ``POSTWIRE_OUTCOME_BATCH_WAIT_MS``.

The real pipeline (claim, attempt tasks, outcome writer) on the embedded Postgres and broker,
in this test's event loop, fed the way the consumer and the wake-up listener feed it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import pytest

from services.dispatcher.gates import claim_shard_key
from services.dispatcher.metrics import DispatcherMetrics
from services.dispatcher.pipeline import Pipeline
from services.dispatcher.settings import load_dispatcher_settings
from shared.core.delivery_message import DeliveryMessage
from tests.conftest import ServiceEnvFactory
from tests.support.dispatch import FAST_ENV, Endpoint, Event, Seeder
from tests.support.pipeline_rig import pipeline_rig
from tests.support.receiver import Receiver

OWNER = "light-traffic-test"
WORKERS = 4


@dataclass
class Rig:
    pipeline: Pipeline
    metrics: DispatcherMetrics
    seed: Seeder
    rx: Receiver

    def accept(self, event: Event, ep: Endpoint, offset: int,
               ordering_key: str | None = None, sequence: int | None = None) -> None:
        """Hand the delivery to the pipeline as the consumer would."""
        ticket = self.pipeline.tracker.track("p", offset)
        self.pipeline.accept(ticket, DeliveryMessage(
            event.delivery_ids[ep.id], event.id, ep.id, ep.account_id, ordering_key, sequence))

    def claims(self) -> tuple[float, float]:
        """(claim transactions, messages they carried) so far."""
        count = self.metrics.registry.get_sample_value("postwire_claim_batch_size_count")
        total = self.metrics.registry.get_sample_value("postwire_claim_batch_size_sum")
        return count or 0.0, total or 0.0


@asynccontextmanager
async def rig(database_url: str, kafka_bootstrap: str, topic_prefix: str,
              service_env: ServiceEnvFactory, **env: str) -> AsyncIterator[Rig]:
    settings = load_dispatcher_settings(service_env(
        **FAST_ENV, DISPATCHER_CLAIM_WORKERS=str(WORKERS), **env))
    async with (pipeline_rig(database_url, kafka_bootstrap, topic_prefix, settings, OWNER,
                             pool_size=6) as running, Receiver() as rx):
        running.start()
        yield Rig(running.pipeline, running.metrics, running.seed, rx)


async def _until(check: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def _endpoint_per_shard(seed: Seeder, rx: Receiver) -> list[Endpoint]:
    """One endpoint in each claim shard (ids are random: create until every shard has one)."""
    by_shard: dict[int, Endpoint] = {}
    account = None
    while len(by_shard) < WORKERS:
        ep = await seed.endpoint(rx.url("/light"), account_id=account)
        account = ep.account_id
        by_shard.setdefault(claim_shard_key(ep.id) % WORKERS, ep)
    return [by_shard[s] for s in range(WORKERS)]


async def test_light_traffic_to_every_claim_shard_shares_one_claim_transaction(
        database_url: str, kafka_bootstrap: str, topic_prefix: str,
        service_env: ServiceEnvFactory) -> None:
    async with rig(database_url, kafka_bootstrap, topic_prefix, service_env,
                   DISPATCHER_CLAIM_LINGER_MS="1000") as r:
        endpoints = await _endpoint_per_shard(r.seed, r.rx)
        events = [await r.seed.event([ep], publish=False) for ep in endpoints * 2]
        for offset, (event, ep) in enumerate(zip(events, endpoints * 2, strict=True)):
            r.accept(event, ep, offset)   # 8 messages over the four shards, ~5 ms apart
            await asyncio.sleep(0.005)
        await r.rx.wait_for(lambda: len(r.rx.requests) >= len(events), timeout_s=10)
        assert r.claims() == (1.0, float(len(events))), \
            "one transaction claimed every shard's messages"
        ids = [e.delivery_ids[ep.id] for e, ep in zip(events, endpoints * 2, strict=True)]
        statuses = await r.seed.wait_status(ids, {"succeeded"}, timeout_s=10)
        assert set(statuses.values()) == {"succeeded"}
        await asyncio.sleep(0.5)
        assert len(r.rx.requests) == len(events), "each sent once"


async def test_without_a_linger_each_shards_worker_claims_its_own(
        database_url: str, kafka_bootstrap: str, topic_prefix: str,
        service_env: ServiceEnvFactory) -> None:
    """The control: with the linger switched off, the same traffic takes a transaction per
    shard at least (so the test above sees the linger, not a coincidence)."""
    async with rig(database_url, kafka_bootstrap, topic_prefix, service_env,
                   DISPATCHER_CLAIM_LINGER_MS="0") as r:
        endpoints = await _endpoint_per_shard(r.seed, r.rx)
        events = [await r.seed.event([ep], publish=False) for ep in endpoints]
        for offset, (event, ep) in enumerate(zip(events, endpoints, strict=True)):
            r.accept(event, ep, offset)
        await r.rx.wait_for(lambda: len(r.rx.requests) >= len(events), timeout_s=10)
        count, carried = r.claims()
        assert carried == len(events) and count >= WORKERS


async def _recorded_after_send(r: Rig, event: Event, ep: Endpoint) -> float:
    """Seconds from the request's arrival at the receiver to its outcome in Postgres."""
    sent = len(r.rx.requests)
    await r.rx.wait_for(lambda: len(r.rx.requests) > sent, timeout_s=10)
    arrived = time.monotonic()
    await r.seed.wait_status([event.delivery_ids[ep.id]], {"succeeded"}, timeout_s=10)
    return time.monotonic() - arrived


@pytest.mark.parametrize("keyed", [False, True], ids=["unkeyed-lingers", "keyed-hurries"])
async def test_an_outcome_lingers_only_when_nothing_waits_for_it(
        database_url: str, kafka_bootstrap: str, topic_prefix: str,
        service_env: ServiceEnvFactory, keyed: bool) -> None:
    async with rig(database_url, kafka_bootstrap, topic_prefix, service_env,
                   OUTCOME_LINGER_MS="1000", OUTCOME_BATCH_WAIT_MS="5",
                   DISPATCHER_CLAIM_LINGER_MS="0") as r:
        ep = await r.seed.endpoint(r.rx.url("/linger"))
        key = "order-1" if keyed else None
        event = await r.seed.event([ep], ordering_key=key, publish=False)
        r.accept(event, ep, 0, key, 1 if keyed else None)
        took = await _recorded_after_send(r, event, ep)
        if keyed:
            assert took < 0.8, f"a keyed outcome was held {took:.2f} s"
        else:
            assert took >= 0.8, f"an unkeyed outcome was recorded after {took:.2f} s"
        await _until(lambda: r.pipeline.gates.in_flight == 0)


@pytest.mark.parametrize("keyed", [False, True], ids=["unkeyed-gathers", "keyed-hurries"])
async def test_a_keyed_message_ends_the_claim_linger(
        database_url: str, kafka_bootstrap: str, topic_prefix: str,
        service_env: ServiceEnvFactory, keyed: bool) -> None:
    """Each of a key's deliveries waits for the one before it, so a gathering claim worker
    would cap a busy key's rate at one delivery per linger: a keyed message is claimed at
    once, an unkeyed one waits for company."""
    async with rig(database_url, kafka_bootstrap, topic_prefix, service_env,
                   DISPATCHER_CLAIM_LINGER_MS="1000") as r:
        ep = await r.seed.endpoint(r.rx.url("/hurry"))
        key = "order-7" if keyed else None
        event = await r.seed.event([ep], ordering_key=key, publish=False)
        accepted = time.monotonic()
        r.accept(event, ep, 0, key, 1 if keyed else None)
        await r.rx.wait_for(lambda: len(r.rx.requests) >= 1, timeout_s=10)
        took = time.monotonic() - accepted
        if keyed:
            assert took < 0.8, f"a keyed message waited {took:.2f} s for its claim"
        else:
            assert took >= 0.8, f"an unkeyed message was sent after {took:.2f} s"


async def test_rare_messages_are_claimed_without_gathering(
        database_url: str, kafka_bootstrap: str, topic_prefix: str,
        service_env: ServiceEnvFactory) -> None:
    """One message in the last seconds with a 500 ms linger: no company is expected within
    it (1 a second x 0.5 s < 1), so the message is claimed at once instead of waiting."""
    async with rig(database_url, kafka_bootstrap, topic_prefix, service_env,
                   DISPATCHER_CLAIM_LINGER_MS="500") as r:
        ep = await r.seed.endpoint(r.rx.url("/rare"))
        event = await r.seed.event([ep], publish=False)
        accepted = time.monotonic()
        r.accept(event, ep, 0)
        await r.rx.wait_for(lambda: len(r.rx.requests) >= 1, timeout_s=10)
        took = time.monotonic() - accepted
        assert took < 0.4, f"a lone message waited {took:.2f} s for company"


async def test_messages_that_arrive_together_are_claimed_together_at_once(
        database_url: str, kafka_bootstrap: str, topic_prefix: str,
        service_env: ServiceEnvFactory) -> None:
    """A wake-up or fetch that brings several messages is the company a linger waits for (a
    producer's batch, ingest's group commit): with a 1 s linger, one message for each claim
    shard, arriving together, share one claim transaction that starts at once. (Alone, an
    unkeyed message waits out the linger: ``test_a_keyed_message_ends_the_claim_linger``.)"""
    async with rig(database_url, kafka_bootstrap, topic_prefix, service_env,
                   DISPATCHER_CLAIM_LINGER_MS="1000") as r:
        endpoints = await _endpoint_per_shard(r.seed, r.rx)
        events = [await r.seed.event([ep], publish=False) for ep in endpoints]
        accepted = time.monotonic()
        for offset, (event, ep) in enumerate(zip(events, endpoints, strict=True)):
            r.accept(event, ep, offset)
        r.pipeline.arrived(len(events))
        await r.rx.wait_for(lambda: len(r.rx.requests) >= len(events), timeout_s=10)
        took = time.monotonic() - accepted
        assert took < 0.8, f"messages that arrived together waited {took:.2f} s"
        assert r.claims() == (1.0, float(len(events))), "one transaction for every shard"
