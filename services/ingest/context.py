"""The resources an ingest process shares between its handlers."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg
from aiohttp import web

from services.ingest.metrics import IngestMetrics
from services.ingest.settings import IngestSettings
from shared.adapters.kafka.publisher import KafkaPublisher
from shared.outbox_relay import OutboxFlusher


@dataclass
class IngestContext:
    """Created at start by ``app.make_app``; handlers reach it with ``request.app[CTX]``."""

    settings: IngestSettings
    pool: asyncpg.Pool
    publisher: KafkaPublisher
    flusher: OutboxFlusher
    metrics: IngestMetrics


CTX: web.AppKey[IngestContext] = web.AppKey("ingest_context", IngestContext)
