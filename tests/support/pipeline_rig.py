"""The dispatcher's real pipeline (claim, attempt tasks, outcome writer, outbox flusher) in
the test's own event loop, on the embedded Postgres and broker, fed by the test the way the
consumer and the wake-up listener feed it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import asyncpg

from services.dispatcher.app import claim_config
from services.dispatcher.claims import ClaimStore
from services.dispatcher.metrics import DispatcherMetrics
from services.dispatcher.pipeline import Pipeline
from services.dispatcher.settings import DispatcherSettings
from shared.adapters.http_client import WebhookClient
from shared.adapters.kafka.publisher import KafkaPublisher
from shared.outbox_relay import OutboxFlusher
from tests.support.dispatch import Seeder


@dataclass
class PipelineRig:
    pool: asyncpg.Pool
    seed: Seeder
    metrics: DispatcherMetrics
    flusher: OutboxFlusher
    pipeline: Pipeline

    def start(self) -> None:
        """Start the flusher and the pipeline (a test may seed rows first)."""
        self.flusher.start()
        self.pipeline.start()


@asynccontextmanager
async def pipeline_rig(database_url: str, kafka_bootstrap: str, topic_prefix: str,
                       settings: DispatcherSettings, owner: str,
                       pool_size: int = 4) -> AsyncIterator[PipelineRig]:
    """A pipeline leasing as ``owner``, not started; shut down and closed on exit."""
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=pool_size)
    seed = Seeder(pool, kafka_bootstrap, topic_prefix)
    publisher = KafkaPublisher(kafka_bootstrap, topic_prefix, partitions=4)
    metrics = DispatcherMetrics()
    client = WebhookClient(timeout_s=5.0, allow_private=True)
    flusher = OutboxFlusher(pool, publisher)
    pipeline = Pipeline(settings, pool, owner, ClaimStore(pool, owner, claim_config(settings)),
                        client, flusher, metrics)
    try:
        yield PipelineRig(pool, seed, metrics, flusher, pipeline)
    finally:
        await pipeline.shutdown(drain_s=1.0)
        await flusher.stop()
        await client.close()
        await seed.close()
        await publisher.stop()
        await pool.close()
