"""Publishing to Kafka with self-healing: reconnects, and re-creates topics a broker lost.

A broker that restarts empty (Tansu keeps memory only) loses its topics too; the publisher
re-runs topic creation after a failed send, so the outbox relay recovers without operator help.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from shared.adapters.kafka.partitioning import partition_for
from shared.adapters.kafka.security import client_options
from shared.adapters.kafka.topics import TopicMismatch, ensure_topics, topic_name
from shared.config import CommonSettings
from shared.config_kafka import PLAINTEXT, KafkaSecurity
from shared.core.errors import ConfigError

log = logging.getLogger(__name__)


class PublishFailed(Exception):
    """The broker did not acknowledge every message; the caller keeps them for a later retry."""


@dataclass(frozen=True)
class Message:
    """One Kafka record addressed by logical topic (``deliveries`` or ``deadletter``)."""

    topic: str
    key: bytes
    value: bytes


class KafkaPublisher:
    """Owns one producer (acks=all, short linger, :func:`partition_for` as partitioner).
    Safe to share within a process."""

    def __init__(self, bootstrap: str, prefix: str, partitions: int, linger_ms: int = 2, *,
                 replication_factor: int = 1, security: KafkaSecurity = PLAINTEXT) -> None:
        self._bootstrap = bootstrap
        self._prefix = prefix
        self._partitions = partitions
        self._linger_ms = linger_ms
        self._replication_factor = replication_factor
        self._security = security
        self._producer: AIOKafkaProducer | None = None
        self._topics_ok = False
        self._lock = asyncio.Lock()

    @classmethod
    def from_settings(cls, common: CommonSettings) -> KafkaPublisher:
        """A publisher for the service's bootstrap, prefix, topic layout and security."""
        return cls(common.kafka_bootstrap, common.topic_prefix, common.kafka_partitions,
                   replication_factor=common.kafka_replication_factor,
                   security=common.kafka_security)

    async def _ensure_started(self) -> AIOKafkaProducer:
        async with self._lock:
            if not self._topics_ok:
                await ensure_topics(self._bootstrap, self._prefix, self._partitions,
                                    replication_factor=self._replication_factor,
                                    security=self._security)
                self._topics_ok = True
            if self._producer is None:
                producer = AIOKafkaProducer(
                    bootstrap_servers=self._bootstrap, acks="all", linger_ms=self._linger_ms,
                    request_timeout_ms=10000, max_batch_size=512 * 1024, retry_backoff_ms=200,
                    partitioner=partition_for, **client_options(self._security),
                )
                try:
                    await producer.start()
                except BaseException:
                    await producer.stop()
                    raise
                self._producer = producer
            return self._producer

    async def start(self) -> None:
        """Try to connect now; an unreachable broker is logged, not fatal (sends retry).

        Raises TopicMismatch when existing topics differ from the settings: the service must
        not start then, nor when a TLS file cannot be loaded (ConfigError)."""
        client_options(self._security)
        try:
            await self._ensure_started()
        except TopicMismatch:
            raise
        except (KafkaError, OSError, ConfigError) as exc:
            log.warning("kafka not reachable at start: %s", exc)

    async def publish(self, messages: Sequence[Message], timeout_s: float = 15.0) -> None:
        """Send ``messages`` and wait until the broker acknowledged all of them.

        Raises PublishFailed otherwise; some messages may have been written (at least once).
        """
        if not messages:
            return
        try:
            async with asyncio.timeout(timeout_s):
                producer = await self._ensure_started()
                futures = [
                    await producer.send(topic_name(self._prefix, m.topic), key=m.key, value=m.value)
                    for m in messages
                ]
                await asyncio.gather(*futures)
        except (KafkaError, OSError, ConfigError, TimeoutError) as exc:
            await self._reset()
            raise PublishFailed(f"{type(exc).__name__}: {exc}") from exc

    async def _reset(self) -> None:
        async with self._lock:
            self._topics_ok = False
            producer, self._producer = self._producer, None
        if producer is not None:
            try:
                await producer.stop()
            except (KafkaError, OSError) as exc:
                log.debug("producer stop failed: %s", exc)

    async def ping(self, timeout_s: float = 2.0) -> str | None:
        """None when the broker answers a metadata request in time; otherwise the reason."""
        try:
            async with asyncio.timeout(timeout_s):
                producer = await self._ensure_started()
                await producer.client.fetch_all_metadata()
            return None
        except (KafkaError, OSError, ConfigError, TimeoutError) as exc:
            await self._reset()
            return f"kafka: {type(exc).__name__}: {exc}"

    async def stop(self) -> None:
        """Flush and close the producer."""
        await self._reset()
