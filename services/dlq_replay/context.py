"""The resources an admin process shares between its handlers."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg
from aiohttp import web

from services.dlq_replay.metrics import AdminMetrics
from services.dlq_replay.settings import AdminSettings
from services.dlq_replay.worker import BulkReplayWorker
from shared.adapters.kafka.publisher import KafkaPublisher
from shared.outbox_relay import OutboxFlusher


@dataclass
class AdminContext:
    """Created at start by ``app.make_app``; handlers reach it with ``request.app[CTX]``."""

    settings: AdminSettings
    pool: asyncpg.Pool
    publisher: KafkaPublisher
    flusher: OutboxFlusher
    worker: BulkReplayWorker
    metrics: AdminMetrics


CTX: web.AppKey[AdminContext] = web.AppKey("admin_context", AdminContext)
