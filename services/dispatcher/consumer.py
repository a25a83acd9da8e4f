"""The Kafka side of the dispatcher: a consumer group member on ``{prefix}deliveries``.

- ``enable_auto_commit=False``: offsets are committed every ``COMMIT_INTERVAL_S`` (and on
  revocation and shutdown) only up to what :class:`OffsetTracker` says is durable.
- ``fetch_max_wait_ms=10``: Tansu answers a waiting fetch only at ``fetch_max_wait``.
- Revocation: waiting messages of the revoked partitions are dropped, what is durable is
  committed, and their tracking ends (late outcomes of in-flight work no longer move offsets;
  the new owner finds those deliveries leased and skips them).
- Self-healing: the broker may die or come back empty (no topics, no group, no offsets). Any
  Kafka error, or fetches stalled on a rebalance that never finishes, re-creates the consumer
  after re-creating the topics, with backoff; a member without partitions re-creates the
  topics. It never exits because of the broker: Postgres is the
  record, and the sweeper re-publishes whatever the broker lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError

from services.dispatcher.metrics import DispatcherMetrics
from services.dispatcher.pipeline import Pipeline
from services.dispatcher.settings import DispatcherSettings
from shared.adapters.kafka.security import client_options
from shared.adapters.kafka.topics import DELIVERIES, ensure_topics, topic_name
from shared.core.delivery_message import decode_delivery_message
from shared.core.errors import ConfigError

log = logging.getLogger(__name__)

COMMIT_INTERVAL_S = 0.2
UNASSIGNED_RECHECK_S = 1.0     # no partitions this long: make sure the topics exist
FETCH_STALL_S = 2.0            # a fetch this long is waiting on a rebalance...
STALL_RESTART_S = 15.0         # ...and stalled this long in all: re-create the consumer
MAX_COMMIT_FAILURES = 10       # consecutive failed commits: the member's view is stale


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, owner: DeliveryConsumer) -> None:
        self._owner = owner

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._owner.on_revoked(set(revoked))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        log.info("assigned %d partitions", len(assigned))


class DeliveryConsumer:
    """Feeds a :class:`Pipeline`; ``run`` until ``stop``."""

    def __init__(self, settings: DispatcherSettings, pipeline: Pipeline,
                 metrics: DispatcherMetrics) -> None:
        self._settings = settings
        self._pipeline = pipeline
        self._metrics = metrics
        self._consumer: AIOKafkaConsumer | None = None
        self._stop_fetch = asyncio.Event()
        self._closing = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._last_commit = 0.0
        self._commit_failures = 0
        self.topic = topic_name(settings.common.topic_prefix, DELIVERIES)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="kafka-consumer")

    async def stop(self) -> None:
        """Stop fetching, commit what is durable, leave the group."""
        self._stop_fetch.set()
        self._closing.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def stop_fetching(self) -> None:
        """Stop taking new messages (SIGTERM drain starts); offsets are still committed."""
        self._stop_fetch.set()

    async def _run(self) -> None:
        backoff = 0.5
        while not self._closing.is_set():
            try:
                await self._session()
                backoff = 0.5
                continue
            except (KafkaError, OSError, ConfigError, TimeoutError) as exc:
                log.warning("kafka consumer failed (%s: %s); re-creating in %.1fs",
                            type(exc).__name__, exc, backoff)
            except Exception:  # a bug or a library assertion must not end consumption
                log.exception("kafka consumer crashed; re-creating in %.1fs", backoff)
            self._metrics.consumer_restarts.inc()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), timeout=backoff)
            backoff = min(backoff * 2, 5.0)

    def _new_consumer(self) -> AIOKafkaConsumer:
        session_ms = self._settings.kafka_session_timeout_ms
        return AIOKafkaConsumer(
            bootstrap_servers=self._settings.common.kafka_bootstrap,
            group_id=self._settings.group_id, enable_auto_commit=False,
            auto_offset_reset="earliest", fetch_max_wait_ms=10, metadata_max_age_ms=3000,
            session_timeout_ms=session_ms,
            heartbeat_interval_ms=max(100, min(1000, session_ms // 3)),
            request_timeout_ms=15000,
            max_poll_interval_ms=300000, retry_backoff_ms=200, max_partition_fetch_bytes=1 << 20,
            **client_options(self._settings.common.kafka_security),
        )

    async def _session(self) -> None:
        common = self._settings.common
        await ensure_topics(common.kafka_bootstrap, common.topic_prefix, common.kafka_partitions,
                            replication_factor=common.kafka_replication_factor,
                            security=common.kafka_security)
        consumer = self._new_consumer()
        # A pattern, not a topic list: metadata requests then name no topic, so the consumer
        # never auto-creates the topic (Tansu does, and racing an explicit CreateTopics after
        # a restart can leave it with two inconsistent copies).
        consumer.subscribe(pattern=f"^{re.escape(self.topic)}$", listener=_Listener(self))
        try:
            await consumer.start()
            self._consumer = consumer
            await self._loop(consumer)
        finally:
            await self._close(consumer)

    async def _loop(self, consumer: AIOKafkaConsumer) -> None:
        """Fetch, hand over, commit. Watchdogs: without partitions for a while, re-create the
        topics (the broker may have come back empty); fetches stalled on a rebalance that
        does not finish, re-create the consumer. A member that merely has no partitions (more
        dispatchers than partitions) stays: re-joining would rebalance the whole group."""
        healthy_since = assigned_since = last_check = time.monotonic()
        while not self._closing.is_set():
            stalled = False
            if self._stop_fetch.is_set() or self._pipeline.gates.full:
                await asyncio.sleep(0.02)
            else:
                batches = await self._fetch(consumer)
                stalled = batches is None
                for tp, records in (batches or {}).items():
                    self._accept(tp, records)
            await self._maybe_commit(consumer)
            now = time.monotonic()
            if not stalled:
                healthy_since = now
            elif now - healthy_since > STALL_RESTART_S:
                raise ConfigError("consumer stalled in a rebalance; re-joining the group")
            if consumer.assignment() or self._stop_fetch.is_set():
                assigned_since = now
            elif now - assigned_since > UNASSIGNED_RECHECK_S and now - last_check > 2.0:
                last_check = now
                common = self._settings.common
                await ensure_topics(common.kafka_bootstrap, common.topic_prefix,
                                    common.kafka_partitions,
                                    replication_factor=common.kafka_replication_factor,
                                    security=common.kafka_security)

    @staticmethod
    async def _fetch(consumer: AIOKafkaConsumer) -> dict[TopicPartition, list[Any]] | None:
        """One fetch; None when it stalled. aiokafka's ``getmany`` waits without a timeout
        while a rebalance is in progress, and a rebalance against a broker that restarted
        empty can stay in progress forever (seen with Tansu); :meth:`_loop` then re-creates
        the consumer."""
        try:
            return dict(await asyncio.wait_for(
                consumer.getmany(timeout_ms=100, max_records=2000), timeout=FETCH_STALL_S))
        except TimeoutError:
            return None

    def _accept(self, tp: TopicPartition, records: list[Any]) -> None:
        tracker = self._pipeline.tracker
        for record in records:
            ticket = tracker.track(tp, record.offset)
            try:
                message = decode_delivery_message(record.value)
            except (ValueError, TypeError) as exc:
                log.error("skipping undecodable message at %s:%d: %s", tp, record.offset, exc)
                tracker.done(ticket)
                continue
            self._pipeline.accept(ticket, message)

    async def _maybe_commit(self, consumer: AIOKafkaConsumer, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_commit < COMMIT_INTERVAL_S:
            return
        self._last_commit = now
        assigned = set(consumer.assignment())
        self._metrics.assigned_partitions.set(len(assigned))
        await self._commit(consumer, assigned)
        self._observe_lag(consumer, assigned)

    async def _commit(self, consumer: AIOKafkaConsumer, partitions: set[TopicPartition]) -> None:
        tracker = self._pipeline.tracker
        offsets = tracker.committable(set(partitions))
        if not offsets:
            return
        try:
            await consumer.commit({tp: off for tp, off in offsets.items()})
            tracker.mark_committed(offsets)
            self._commit_failures = 0
        except KafkaError as exc:
            self._commit_failures += 1
            log.info("offset commit failed (%s); will retry", exc)
            if self._commit_failures >= MAX_COMMIT_FAILURES:
                self._commit_failures = 0
                raise ConfigError("offset commits keep failing; re-joining the group") from exc

    def _observe_lag(self, consumer: AIOKafkaConsumer, assigned: set[TopicPartition]) -> None:
        lag = 0
        for tp in assigned & set(consumer.assignment()):  # a rebalance may have run meanwhile
            high = consumer.highwater(tp)
            position = self._pipeline.tracker.position(tp)
            if high is not None and position is not None:
                lag += max(0, high - position)
        self._metrics.consumer_lag.set(lag)

    async def on_revoked(self, revoked: set[TopicPartition]) -> None:
        """Rebalance: drop waiting work of ``revoked``, commit what is durable, stop tracking."""
        self._pipeline.revoke(revoked)
        if self._consumer is not None:
            with contextlib.suppress(ConfigError):
                await self._commit(self._consumer, revoked)
        self._pipeline.tracker.drop(set(revoked))
        self._metrics.assigned_partitions.set(0)
        if revoked:
            log.info("revoked %d partitions", len(revoked))

    async def _close(self, consumer: AIOKafkaConsumer) -> None:
        with contextlib.suppress(KafkaError, OSError, TimeoutError, ConfigError):
            await asyncio.wait_for(self._maybe_commit(consumer, force=True), timeout=5)
        self._pipeline.revoke(None)
        self._pipeline.tracker.drop(None)
        self._consumer = None
        with contextlib.suppress(KafkaError, OSError, TimeoutError):
            await asyncio.wait_for(consumer.stop(), timeout=10)
