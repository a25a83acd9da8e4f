"""Consumer lag of the dispatchers' Kafka group, sampled for the console overview.

Lag is what the dispatchers have not consumed yet: for every partition of ``<prefix>deliveries``
the log end offset minus the group's committed offset (the log start offset when the group has
not committed there yet), summed. It is read from the broker with the plain admin and
consumer APIs (no group membership, so sampling never rebalances the dispatchers), every
``interval_s``; the last hour of samples is kept in memory. A sample that fails is recorded as
missing and the clients are re-created for the next one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from shared.adapters.kafka.security import client_options
from shared.adapters.kafka.topics import DELIVERIES, topic_name
from shared.config import CommonSettings
from shared.tasks import BackgroundLoop, within

log = logging.getLogger(__name__)

KEEP_S = 3600.0
_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class LagSample:
    """Total lag at ``at`` (Unix seconds); None when the broker could not be read."""

    at: float
    lag: int | None


class LagSampler(BackgroundLoop):
    """Background loop of one admin process; ``start``/``stop`` from the app's cleanup_ctx."""

    TASK_NAME = "console-lag-sampler"

    def __init__(self, common: CommonSettings, group: str, interval_s: float) -> None:
        self._common = common
        self._group = group
        self._topic = topic_name(common.topic_prefix, DELIVERIES)
        self._interval_s = interval_s
        self.samples: deque[LagSample] = deque(maxlen=int(KEEP_S / interval_s) + 1)
        self._admin: AIOKafkaAdminClient | None = None
        self._consumer: AIOKafkaConsumer | None = None

    async def stop(self) -> None:
        await super().stop()
        await self._close()

    def latest(self) -> LagSample | None:
        return self.samples[-1] if self.samples else None

    async def _run(self) -> None:
        while True:
            try:
                lag: int | None = await within(self.sample(), _TIMEOUT_S)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # any broker trouble: a gap in the chart, not a dead loop
                log.warning("consumer lag sample failed: %r", exc)
                lag = None
                await self._close()
            self.samples.append(LagSample(time.time(), lag))
            await asyncio.sleep(self._interval_s)

    async def _clients(self) -> tuple[AIOKafkaAdminClient, AIOKafkaConsumer]:
        options: dict[str, Any] = client_options(self._common.kafka_security)
        if self._admin is None:
            admin = AIOKafkaAdminClient(bootstrap_servers=self._common.kafka_bootstrap,
                                        **options)
            await admin.start()
            self._admin = admin
        if self._consumer is None:
            consumer = AIOKafkaConsumer(bootstrap_servers=self._common.kafka_bootstrap,
                                        enable_auto_commit=False, **options)
            await consumer.start()
            self._consumer = consumer
        return self._admin, self._consumer

    async def sample(self) -> int:
        """The group's total lag now. Raises aiokafka errors when the broker is unreachable."""
        admin, consumer = await self._clients()
        partitions = consumer.partitions_for_topic(self._topic)
        if not partitions:
            await consumer.force_metadata_update()
            partitions = consumer.partitions_for_topic(self._topic) or set()
        tps = [TopicPartition(self._topic, p) for p in sorted(partitions)]
        if not tps:
            return 0
        ends = await consumer.end_offsets(tps)
        starts = await consumer.beginning_offsets(tps)
        committed = await admin.list_consumer_group_offsets(self._group, partitions=tps)
        total = 0
        for tp in tps:
            meta = committed.get(tp)
            position = meta.offset if meta is not None and meta.offset >= 0 else starts[tp]
            total += max(0, ends[tp] - max(position, starts[tp]))
        return total

    async def _close(self) -> None:
        if self._consumer is not None:
            with contextlib.suppress(Exception):
                await self._consumer.stop()
        if self._admin is not None:
            with contextlib.suppress(Exception):
                await self._admin.close()
        self._admin = None
        self._consumer = None
