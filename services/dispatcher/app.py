"""Wiring of the dispatcher: resources, the pipeline, background loops, health and metrics.

Start order: Postgres pools (schema checked; the outcome writer has its own), Kafka
publisher, outbox flusher and relay, HTTP client, pipeline, consumer, wake-up listener,
scheduler/sweeper. SIGTERM (the app's cleanup): stop fetching, drain or release in-flight
attempts, flush outcomes, commit offsets, leave the group, close.
"""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg
from aiohttp import web

from services.dispatcher.claim_plan import ClaimConfig
from services.dispatcher.claims import ClaimStore
from services.dispatcher.consumer import DeliveryConsumer
from services.dispatcher.metrics import DispatcherMetrics
from services.dispatcher.pipeline import Pipeline
from services.dispatcher.scheduler import Republisher
from services.dispatcher.settings import DispatcherSettings
from services.dispatcher.wakeup import WakeupListener
from shared.adapters.http_client import WebhookClient
from shared.adapters.kafka.publisher import KafkaPublisher
from shared.adapters.pg.pool import create_pool, ping
from shared.core.backoff import CircuitState
from shared.http.errors import error_middleware
from shared.http.health import add_health_routes
from shared.outbox_relay import OutboxFlusher, OutboxRelay
from shared.retention.service import retention_context
from shared.tasks import cancel_and_wait

GAUGE_INTERVAL_S = 1.0


def lease_owner_name() -> str:
    """A name unique to this process: host, pid and a random suffix."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def claim_config(settings: DispatcherSettings) -> ClaimConfig:
    return ClaimConfig(
        first_delay_s=settings.common.retry_schedule[0],
        lease_s=settings.delivery_timeout_s + settings.lease_margin_s,
        rate_horizon_s=settings.rate_horizon_s,
    )


async def _gauges(pipeline: Pipeline, metrics: DispatcherMetrics) -> None:
    """Refresh the in-flight, waiting and circuit gauges once a second."""
    while True:
        metrics.set_endpoint_in_flight(pipeline.gates.in_flight_by_endpoint())
        metrics.waiting.set(pipeline.waiting)
        states = list(pipeline.circuits.values())
        for state in CircuitState:
            metrics.circuits.labels(state.value).set(sum(1 for s in states if s is state))
        await asyncio.sleep(GAUGE_INTERVAL_S)


@dataclass
class _Resources:
    """Everything with a lifecycle; ``run`` is the app's cleanup context."""

    settings: DispatcherSettings
    pool: asyncpg.Pool
    outcome_pool: asyncpg.Pool
    publisher: KafkaPublisher
    flusher: OutboxFlusher
    relay: OutboxRelay
    client: WebhookClient
    pipeline: Pipeline
    consumer: DeliveryConsumer
    republisher: Republisher
    metrics: DispatcherMetrics
    wakeups: WakeupListener

    async def run(self, _: web.Application) -> AsyncIterator[None]:
        """Start the loops; on shutdown drain in order (see the module docstring)."""
        self.flusher.start()
        self.relay.start()
        self.pipeline.start()
        self.consumer.start()
        self.wakeups.start()
        self.republisher.start()
        gauges = asyncio.create_task(_gauges(self.pipeline, self.metrics), name="gauges")
        yield
        self.consumer.stop_fetching()
        await self.wakeups.stop()
        await self.pipeline.shutdown(self.settings.drain_s)
        await self.consumer.stop()
        await cancel_and_wait(gauges)
        await self.republisher.stop()
        await self.relay.stop()
        await self.flusher.stop()
        await self.client.close()
        await self.publisher.stop()
        await self.outcome_pool.close()
        await self.pool.close()


async def make_app(settings: DispatcherSettings) -> web.Application:
    """Build the app; every resource opens here and closes in the app's cleanup."""
    common = settings.common
    metrics = DispatcherMetrics()
    retention = retention_context(common.database_url, metrics.registry, os.environ)
    pool = await create_pool(common.database_url, max_size=common.db_pool_size,
                             application_name="postwire-dispatcher")
    # the outcome writer's own connections for small batches, planning generically: its
    # statement is planned once instead of on every batch (0.3-0.4 ms, more than running it).
    # One flush runs at a time, but two slots: after Postgres restarts, the pool's background
    # reconnect (which keeps min_size) holds a slot while it connects, and with one slot the
    # writer waited on it (tests/faults/test_dispatcher_faults.py, postgres restart: 2 of 4
    # runs left deliveries pending for 60 s with one slot, none in 8 runs with two or none)
    outcome_pool = await create_pool(common.database_url, min_size=1, max_size=2,
                                     generic_plans=True,
                                     application_name="postwire-dispatcher-outcomes")
    publisher = KafkaPublisher.from_settings(common)
    await publisher.start()
    flusher = OutboxFlusher(pool, publisher)
    relay = OutboxRelay(pool, publisher, on_backlog=metrics.outbox_backlog.set)
    client = WebhookClient(timeout_s=settings.delivery_timeout_s,
                           allow_private=common.allow_private_targets,
                           max_connections=settings.concurrency,
                           denied_ports=settings.denied_target_ports)
    owner = lease_owner_name()
    claims = ClaimStore(pool, owner, claim_config(settings))
    pipeline = Pipeline(settings, pool, owner, claims, client, flusher, metrics,
                        outcome_pool=outcome_pool)
    republisher = Republisher(
        pool, flusher.submit, metrics, scheduler_interval_s=settings.scheduler_interval_s,
        sweep_interval_s=settings.sweep_interval_s, sweep_stale_s=settings.sweep_stale_s)
    consumer = DeliveryConsumer(settings, pipeline, metrics,
                                on_log_lost=republisher.request_recovery)

    wakeups = WakeupListener(common.database_url, consumer, pipeline, metrics,
                             common.kafka_partitions)

    app = web.Application(middlewares=[metrics.http.middleware(), error_middleware])
    resources = _Resources(settings, pool, outcome_pool, publisher, flusher, relay, client,
                           pipeline,
                           consumer, republisher, metrics, wakeups)
    app.cleanup_ctx.append(resources.run)
    app.cleanup_ctx.append(retention)
    async def consuming() -> str | None:
        return consumer.readiness()

    add_health_routes(app, [lambda: ping(pool), publisher.ping, consuming], metrics.registry)
    return app
