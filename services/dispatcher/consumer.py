"""The Kafka side of the dispatcher: a consumer group member on ``{prefix}deliveries``.

- ``enable_auto_commit=False``: offsets are committed every ``COMMIT_INTERVAL_S`` (and on
  revocation and shutdown) only up to what :class:`OffsetTracker` says is durable.
- Fetch deadline (``fetch_wait.py``): 10 ms while records flow (Tansu answers a waiting fetch
  only at its deadline), 500 ms after a second without one, so an idle dispatcher does not
  poll the broker a hundred times a second.
- Revocation: waiting messages of the revoked partitions are dropped, what is durable is
  committed, and their tracking ends (late outcomes of in-flight work no longer move offsets;
  the new owner finds those deliveries leased and skips them).
- Self-healing: the broker may die or come back empty (no topics, no group, no offsets). Any
  Kafka error, or fetches stalled on a rebalance that never finishes, re-creates the consumer
  after re-creating the topics, with backoff; a member without partitions re-creates the
  topics. It never exits because of the broker: Postgres is the
  record, and the sweeper re-publishes whatever the broker lost.
- A log that went backwards (``recovery.py``): every ``RECOVERY_CHECK_S``, and at once after an
  assignment changes, the log end of every assigned partition is read
  and compared with our position, our last commit and the highest end seen before (kept
  across consumer sessions). A partition that went backwards is sought to its start (its
  waiting messages and tracking dropped), and ``on_log_lost`` asks Postgres to re-announce
  every open delivery whose message may be gone (a single reading below our position is only a
  suspicion, confirmed by the next check). No offset above a partition's last known end is
  ever committed (it is lowered to that end). The same check measures the broker lag.
- Readiness (``readiness``): ready only while a consumer is connected, owns partitions, is not
  stalled in a rebalance and could read their log ends within ``READY_STALE_S``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from services.dispatcher.fetch_wait import (
    BUSY_WAIT_MS,
    apply_fetch_wait,
    fetch_wait_ms,
)
from services.dispatcher.metrics import DispatcherMetrics
from services.dispatcher.offsets import Ticket
from services.dispatcher.pipeline import Pipeline
from services.dispatcher.recovery import (
    Backwards,
    PartitionView,
    Suspicion,
    cap_commits,
    cluster_changed,
    group_reset,
    merge_seen_ends,
    plan_recovery,
    progress_stalled,
    should_recreate_topic,
    vanished_commits,
)
from services.dispatcher.settings import DispatcherSettings
from shared.adapters.kafka.metadata import cluster_id_of
from shared.adapters.kafka.security import client_options
from shared.adapters.kafka.topics import DELIVERIES, ensure_topics, topic_name
from shared.core.delivery_message import decode_delivery_message
from shared.core.errors import ConfigError
from shared.tasks import wait_event, within

log = logging.getLogger(__name__)

COMMIT_INTERVAL_S = 0.2
UNASSIGNED_RECHECK_S = 1.0     # no partitions this long: make sure the topics exist
FETCH_STALL_S = 2.0            # a fetch this long is waiting on a rebalance...
STALL_RESTART_S = 15.0         # ...and stalled this long in all: re-create the consumer
MAX_COMMIT_FAILURES = 10       # consecutive failed commits: the member's view is stale
COMMIT_TIMEOUT_S = 5.0         # a commit slower than this hung: re-join the group
RECOVERY_CHECK_S = 1.0         # how often log ends are read (log went backwards? lag?)
CHECK_TIMEOUT_S = 3.0          # a log-end read slower than this counts as failed
READY_STALE_S = 5.0            # not ready when log ends could not be read for this long
UNREADABLE_RECREATE_S = 10.0   # log ends unreadable this long: re-create the consumer
UNREACHABLE_STOP_S = 1.0       # ...and give its stop this long (a leave nobody would hear)
READY_STALL_S = 3.0            # not ready while fetches have stalled this long
WOKEN_FORGET_S = 15.0          # a wake-up's Kafka copy, if any, is the relay's (3 s min age)
WOKEN_MAX = 10_000
FETCH_STUCK_S = 5.0            # messages waiting and positions frozen this long: re-create


async def bounded(awaitable: Awaitable[object], timeout_s: float) -> bool:
    """Run ``awaitable`` for at most ``timeout_s``; True when it finished (its exception, if
    any, is raised). On time-out it is cancelled and left behind, never awaited: aiokafka
    shields parts of its commit and its stop, and ``asyncio.wait_for`` would then wait for
    those however long they take (a stop against a dead coordinator never returned).

    An awaitable that ended in its own cancellation counts as not finished (False), and its
    ``CancelledError`` does not reach the caller, whom nobody cancelled: aiokafka's close
    paths cancel their helper tasks (heartbeat, pending fetches) and await them without
    suppressing the error, so a stop after the broker connections died ends that way. Raised
    to the caller, it once ended consumption for good. A cancellation of the caller itself
    still propagates."""
    task = asyncio.ensure_future(awaitable)
    done, _ = await asyncio.wait({task}, timeout=timeout_s)
    if task in done:
        if task.cancelled():
            log.info("%s ended in its own cancellation", getattr(awaitable, "__qualname__",
                                                                  type(awaitable).__name__))
            return False
        task.result()
        return True
    task.cancel()
    task.add_done_callback(_retrieve)
    return False


def _retrieve(task: asyncio.Future[object]) -> None:
    """Done callback of an abandoned task: read its outcome so asyncio does not log it."""
    if not task.cancelled():
        task.exception()


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, owner: DeliveryConsumer, consumer: AIOKafkaConsumer) -> None:
        self._owner = owner
        self._consumer = consumer

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._owner.on_revoked(set(revoked))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        generation = self._owner.on_joined(self._consumer)
        log.info("assigned %d partitions (group generation %s)", len(assigned), generation)


class DeliveryConsumer:
    """Feeds a :class:`Pipeline`; ``run`` until ``stop``."""

    def __init__(self, settings: DispatcherSettings, pipeline: Pipeline,
                 metrics: DispatcherMetrics, on_log_lost: Callable[[], None]) -> None:
        self._settings = settings
        self._pipeline = pipeline
        self._metrics = metrics
        self._on_log_lost = on_log_lost
        self._consumer: AIOKafkaConsumer | None = None
        self._seen_ends: dict[TopicPartition, int] = {}   # highest end seen, across sessions
        self._ends: dict[TopicPartition, int] = {}        # ends at the last check (this session)
        self._suspects: dict[TopicPartition, Suspicion] = {}  # seen backwards (recovery.py)
        self._positions: dict[TopicPartition, int | None] = {}  # at the last check
        self._ours: dict[TopicPartition, int] = {}        # last positive offset we committed
        self._had_assignment = False                      # this session owned partitions
        self._position_sum: int | None = None             # at the last check
        self._frozen_since: float | None = None           # positions frozen with lag since
        self._stuck_sessions = 0                          # consecutive sessions ended stuck
        self._last_loss_at: float | None = None           # monotonic time of the last log loss
        self._cluster_id: str | None = None               # the broker's, at the last check
        self._generation: int | None = None               # the group's, at the last join
        self._group_reset: str | None = None              # a reset seen at a join, to handle
        self._repair_topic = False                        # next session re-creates the topic
        self._lost_pending: Backwards | None = None       # announce once the topic exists
        self._checked_assignment: frozenset[TopicPartition] = frozenset()
        self._check_due = True
        self._last_check = 0.0
        self._check_ok_at = 0.0
        self._session_started_at = 0.0
        self._unreachable = False                         # session ended: log ends unreadable
        self._assigned = 0
        self._stalled_since: float | None = None
        self._stop_fetch = asyncio.Event()
        self._closing = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._last_commit = 0.0
        self._commit_failures = 0
        # delivery id -> (when, ticket, generation) of a message taken from the wake-up channel
        self._woken: dict[str, tuple[float, Ticket, int]] = {}
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
            await wait_event(self._closing, backoff)
            backoff = min(backoff * 2, 5.0)

    def _new_consumer(self) -> AIOKafkaConsumer:
        session_ms = self._settings.kafka_session_timeout_ms
        return AIOKafkaConsumer(
            bootstrap_servers=self._settings.common.kafka_bootstrap,
            group_id=self._settings.group_id, enable_auto_commit=False,
            auto_offset_reset="earliest", fetch_max_wait_ms=BUSY_WAIT_MS,
            metadata_max_age_ms=3000,
            session_timeout_ms=session_ms,
            heartbeat_interval_ms=max(100, min(1000, session_ms // 3)),
            request_timeout_ms=15000,
            max_poll_interval_ms=300000, retry_backoff_ms=200, max_partition_fetch_bytes=1 << 20,
            **client_options(self._settings.common.kafka_security),
        )

    async def _session(self) -> None:
        common = self._settings.common
        self._ends = {}
        self._suspects = {}
        self._positions = {}
        self._had_assignment = False
        self._position_sum = None
        self._frozen_since = None
        self._check_due = True
        self._unreachable = False
        if self._repair_topic:
            await self._recreate_broken_topic()
        await ensure_topics(common.kafka_bootstrap, common.topic_prefix, common.kafka_partitions,
                            replication_factor=common.kafka_replication_factor,
                            security=common.kafka_security)
        if self._lost_pending is not None:
            reason, self._lost_pending = self._lost_pending, None
            self._log_lost(reason, self.topic)
        consumer = self._new_consumer()
        # A pattern, not a topic list: metadata requests then name no topic, so the consumer
        # never auto-creates the topic (Tansu does, and racing an explicit CreateTopics after
        # a restart can leave it with two inconsistent copies).
        consumer.subscribe(pattern=f"^{re.escape(self.topic)}$", listener=_Listener(self, consumer))
        try:
            self._session_started_at = time.monotonic()
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
        last_record_at, wait_ms = healthy_since, BUSY_WAIT_MS
        while not self._closing.is_set():
            stalled = False
            if self._stop_fetch.is_set() or self._pipeline.gates.full:
                await asyncio.sleep(0.02)
            else:
                batches = await self._fetch(consumer)
                stalled = batches is None
                fresh = 0
                for tp, records in (batches or {}).items():
                    fresh += self._accept(tp, records)
                if fresh:  # the Kafka copy of a wake-up does not end a quiet spell
                    last_record_at = time.monotonic()
                wanted = fetch_wait_ms(time.monotonic(), last_record_at)
                if wanted != wait_ms and apply_fetch_wait(consumer, wanted):
                    wait_ms = wanted
            await self._maybe_commit(consumer)
            await self._maybe_check(consumer)
            now = time.monotonic()
            self._stalled_since = None if not stalled else healthy_since
            if not stalled:
                healthy_since = now
            elif now - healthy_since > STALL_RESTART_S:
                raise ConfigError("consumer stalled in a rebalance; re-joining the group")
            if consumer.assignment() or self._stop_fetch.is_set():
                assigned_since = now
                self._had_assignment = self._had_assignment or bool(consumer.assignment())
            elif now - assigned_since > UNASSIGNED_RECHECK_S and now - last_check > 2.0:
                last_check = now
                listed = consumer.partitions_for_topic(self.topic)
                expected = self._settings.common.kafka_partitions
                if self._had_assignment and (listed is None or len(listed) != expected):
                    # the topic we consumed is gone (or only a broken copy is listed, which
                    # Tansu makes of a deleted topic that producers keep writing to), and its
                    # log with it. The next session re-creates it first and only then has the
                    # lost deliveries re-announced (a message sent to a missing topic breaks
                    # it on Tansu)
                    self._repair_topic = listed is not None
                    self._lost_pending = Backwards.TOPIC_VANISHED
                    self._ours.clear()
                    raise ConfigError(f"topic {self.topic} vanished; re-creating the consumer")
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
            return dict(await within(
                consumer.getmany(timeout_ms=100, max_records=2000), FETCH_STALL_S))
        except TimeoutError:
            return None

    def _accept(self, tp: TopicPartition, records: list[Any]) -> int:
        """Hand ``records`` to the pipeline; returns how many were not the Kafka copy of a
        message already taken from the wake-up channel. Such a copy is not handled again:
        its ticket is done when the wake-up's is (``OffsetTracker.follow``), so its offset
        is committed only once that outcome is durable; if the wake-up was dropped (consumer
        re-created) or names another generation, the copy is handled like any message."""
        tracker = self._pipeline.tracker
        fresh = 0
        for record in records:
            ticket = tracker.track(tp, record.offset)
            try:
                message = decode_delivery_message(record.value)
            except (ValueError, TypeError) as exc:
                log.error("skipping undecodable message at %s:%d: %s", tp, record.offset, exc)
                tracker.done(ticket)
                continue
            woken = self._woken.pop(message.delivery_id, None)
            if woken is None:
                fresh += 1
            elif woken[2] == message.generation and tracker.follow(ticket, woken[1]):
                continue
            self._pipeline.accept(ticket, message)
        return fresh

    def note_woken(self, delivery_id: str, ticket: Ticket, generation: int) -> None:
        """A message of ``delivery_id`` was taken from the wake-up channel with ``ticket``:
        its Kafka copy, expected within a quiet fetch's deadline, follows that ticket and is not
        traffic (see :meth:`_accept`). Entries older than ``WOKEN_FORGET_S`` are forgotten
        (at most ``WOKEN_MAX`` kept); a copy that comes later is handled like any message."""
        now = time.monotonic()
        woken = self._woken
        while woken:
            oldest, (at, _, _) = next(iter(woken.items()))
            if now - at < WOKEN_FORGET_S and len(woken) < WOKEN_MAX:
                break
            del woken[oldest]
        woken[delivery_id] = (now, ticket, generation)

    async def _maybe_commit(self, consumer: AIOKafkaConsumer, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_commit < COMMIT_INTERVAL_S:
            return
        self._last_commit = now
        assigned = set(consumer.assignment())
        self._assigned = len(assigned)
        self._metrics.assigned_partitions.set(len(assigned))
        await self._commit(consumer, assigned)

    async def _commit(self, consumer: AIOKafkaConsumer, partitions: set[TopicPartition]) -> None:
        tracker = self._pipeline.tracker
        offsets, _capped = cap_commits(tracker.committable(set(partitions)), self._ends)
        if not offsets:
            return
        try:
            # bounded: a commit that hangs (a topic deleted under it, a coordinator failing
            # over) must not stop the loop and every watchdog in it; it counts as failed
            finished = await bounded(consumer.commit({tp: off for tp, off in offsets.items()}),
                                     COMMIT_TIMEOUT_S)
        except KafkaError as exc:
            self._commit_failed(str(exc))
            return
        if not finished:
            self._commit_failed(f"no answer within {COMMIT_TIMEOUT_S:g} s")
            return
        tracker.mark_committed(offsets)
        self._ours.update((tp, off) for tp, off in offsets.items() if off > 0)
        self._commit_failures = 0

    def _commit_failed(self, why: str) -> None:
        self._commit_failures += 1
        log.info("offset commit failed (%s); will retry", why)
        if self._commit_failures >= MAX_COMMIT_FAILURES:
            self._commit_failures = 0
            raise ConfigError("offset commits keep failing; re-joining the group")

    async def _maybe_check(self, consumer: AIOKafkaConsumer) -> None:
        """Run :meth:`_check` when due: every ``RECOVERY_CHECK_S`` or after the assignment
        changed. A failed read is retried at the next turn."""
        now = time.monotonic()
        assigned = frozenset(consumer.assignment())
        changed = assigned != self._checked_assignment
        if changed:
            self._check_due = True
            self._position_sum = None
        if not assigned or self._stop_fetch.is_set():
            return
        if not self._check_due and now - self._last_check < RECOVERY_CHECK_S:
            return
        self._last_check = now
        try:
            if changed:
                await within(self._check_group_offsets(consumer), CHECK_TIMEOUT_S)
            await within(self._check(consumer, assigned), CHECK_TIMEOUT_S)
        except (KafkaError, OSError, TimeoutError) as exc:
            log.info("reading log ends failed (%s: %s); will retry", type(exc).__name__, exc)
            # judged when the read gave up, not when it began: a read that timed out took
            # CHECK_TIMEOUT_S, and the loop's other waits (a stalled fetch, a hung commit)
            # come between reads, so judging at the start would add one more round of them
            failed_at = time.monotonic()
            if failed_at - max(self._check_ok_at, self._session_started_at) > UNREADABLE_RECREATE_S:
                # Seen after the embedded broker restarted: the session's connections never
                # recovered (every read timed out, the group was never joined again), so no
                # check could notice the lost log. A new consumer connects and joins afresh;
                # the old one's last commit and leave are skipped (:meth:`_close`).
                self._unreachable = True
                raise ConfigError(f"log ends unreadable for {UNREADABLE_RECREATE_S:.0f} s; "
                                  "re-creating the consumer") from exc
            return
        self._check_due = False
        self._checked_assignment = assigned
        self._check_ok_at = time.monotonic()

    def _log_lost(self, reason: Backwards, where: object) -> None:
        """Count and log a lost log, and ask Postgres to re-announce what it may have held."""
        self._metrics.log_resets.labels(reason.value).inc()
        log.warning("log of %s went backwards (%s); re-announcing open deliveries", where,
                    reason.value)
        self._last_loss_at = time.monotonic()
        self._seen_ends.clear()  # they describe the lost log
        self._suspects.clear()
        self._on_log_lost()

    async def _recreate_broken_topic(self) -> None:
        """Delete and re-create the deliveries topic, then re-announce everything open.

        Only after a recent log loss, when a consumer session could read nothing of a topic
        whose log ends say it holds messages (``should_recreate_topic``): Tansu accepts produce
        requests for a topic that does not exist (a producer with metadata from before an
        empty restart), and a topic created afterwards can be neither read nor written.
        Deleting it is the only repair; nothing is lost, because every open delivery is
        announced again from Postgres.
        """
        self._repair_topic = False
        common = self._settings.common
        admin = AIOKafkaAdminClient(bootstrap_servers=common.kafka_bootstrap,
                                    request_timeout_ms=10000,
                                    **client_options(common.kafka_security))
        try:
            await admin.start()
            await admin.delete_topics([self.topic])
        finally:
            await admin.close()
        log.error("deleted the unreadable topic %s to re-create it", self.topic)
        self._ours.clear()
        self._lost_pending = Backwards.TOPIC_UNREADABLE

    async def _check_group_offsets(self, consumer: AIOKafkaConsumer) -> None:
        """After an assignment change: did the group forget offsets we committed earlier (in
        any session, for any partition)? Then the broker lost its state and its log."""
        if not self._ours:
            return
        group = {tp: await consumer.committed(tp) for tp in self._ours}
        vanished = vanished_commits(self._ours, group)
        for tp in vanished:
            self._ours.pop(tp, None)
        if vanished:
            self._log_lost(Backwards.COMMIT_VANISHED, f"{len(vanished)} partitions")

    async def _check(self, consumer: AIOKafkaConsumer, assigned: frozenset[TopicPartition]) -> None:
        """Read the log ends of ``assigned``; rewind partitions whose log went backwards,
        request the re-announcement of lost deliveries, and set the broker lag."""
        tracker = self._pipeline.tracker
        if await self._check_cluster(consumer, assigned) or await self._check_group(
                consumer, assigned):
            return
        listed: dict[TopicPartition, int] = dict(await consumer.end_offsets(list(assigned)))
        # The larger of ListOffsets and the last fetch's high watermark: both can trail the
        # records a fetch already returned (Tansu), neither runs ahead of the log.
        ends = {tp: max(end, consumer.highwater(tp) or 0) for tp, end in listed.items()}
        positions: dict[TopicPartition, int | None] = {}
        for tp in ends:
            position = await consumer.position(tp)
            seen = tracker.position(tp)
            positions[tp] = max(position, seen) if seen is not None else position
        views = {tp: PartitionView(end=end, position=positions[tp],
                                   committed=tracker.committed(tp),
                                   previous_end=self._seen_ends.get(tp),
                                   advanced=positions[tp] != self._positions.get(tp))
                 for tp, end in ends.items()}
        self._positions = positions
        went_back = frozenset(tracker.take_went_back())
        plan = plan_recovery(views, time.monotonic(), suspects=self._suspects,
                             read_below_position=went_back)
        self._suspects = plan.suspects
        for tp in went_back:
            self._metrics.log_resets.labels(Backwards.READ_BELOW_POSITION.value).inc()
            log.warning("log of %s went backwards (%s)", tp, Backwards.READ_BELOW_POSITION.value)
        for tp, reason in plan.rewind.items():
            self._ours.pop(tp, None)
            self._metrics.log_resets.labels(reason.value).inc()
            log.warning("log of %s went backwards (%s: end %d, position %s, committed %s, "
                        "end seen before %s); rewinding to its start", tp, reason.value,
                        ends[tp], positions[tp], tracker.committed(tp), self._seen_ends.get(tp))
        rewound = set(plan.rewind)
        if rewound:
            await self._rewind(consumer, rewound)
        if plan.reannounce:
            self._last_loss_at = time.monotonic()
            self._on_log_lost()
        self._seen_ends = merge_seen_ends(self._seen_ends, ends, rewound)
        self._ends = ends
        lag = sum(max(0, end - (0 if tp in rewound else (positions[tp] or 0)))
                  for tp, end in ends.items())
        self._metrics.set_broker_lag(lag)
        self._watch_progress(lag, sum(p or 0 for p in positions.values()), bool(rewound))

    async def _check_cluster(self, consumer: AIOKafkaConsumer,
                             assigned: frozenset[TopicPartition]) -> bool:
        """True (after rewinding every assigned partition and asking for the re-announcement)
        when the broker answers with another cluster id than at the previous check: a cluster
        wiped and formatted again, whose logs are all gone whatever the offsets say."""
        client: Any = getattr(consumer, "_client", None)
        current = cluster_id_of(getattr(client, "cluster", None))
        known, self._cluster_id = self._cluster_id, current or self._cluster_id
        if not cluster_changed(known, current):
            return False
        self._ours.clear()  # committed to the cluster that is gone
        self._log_lost(Backwards.CLUSTER_CHANGED, f"cluster {known} -> {current}")
        self._ends = {}
        if assigned:
            await self._rewind(consumer, set(assigned))
        return True

    async def _check_group(self, consumer: AIOKafkaConsumer,
                           assigned: frozenset[TopicPartition]) -> bool:
        """True (after rewinding every assigned partition and asking for the re-announcement)
        when the last join found the coordinator had forgotten the group: its broker lost its
        state, and its logs may have lost messages no consumer had read yet."""
        reason, self._group_reset = self._group_reset, None
        if reason is None:
            return False
        self._ours.clear()  # committed to the state that is gone
        self._log_lost(Backwards.GROUP_RESET, reason)
        self._ends = {}
        if assigned:
            await self._rewind(consumer, set(assigned))
        return True

    def _watch_progress(self, lag: int, position_sum: int, rewound: bool) -> None:
        """Raise (re-creating the consumer) when messages wait on the broker but the positions
        stayed frozen for ``FETCH_STUCK_S`` while fetching was allowed."""
        now = time.monotonic()
        fetching = not (self._pipeline.gates.full or self._stop_fetch.is_set() or rewound)
        if progress_stalled(lag, position_sum, self._position_sum, fetching):
            self._frozen_since = self._frozen_since or now
            if now - self._frozen_since > FETCH_STUCK_S:
                self._stuck_sessions += 1
                self._repair_topic = should_recreate_topic(
                    self._stuck_sessions, self._last_loss_at, now)
                raise ConfigError(f"{lag} messages waiting but the consumer makes no progress; "
                                  "re-creating it")
        else:
            self._frozen_since = None
            if self._position_sum is not None and position_sum != self._position_sum:
                self._stuck_sessions = 0
        self._position_sum = position_sum

    async def _rewind(self, consumer: AIOKafkaConsumer, partitions: set[TopicPartition]) -> None:
        """Seek ``partitions`` to their start, forget their waiting messages and tracking, and
        commit the start so no member resumes above the end."""
        self._pipeline.revoke(partitions)
        self._pipeline.tracker.drop(set(partitions))
        await consumer.seek_to_beginning(*partitions)
        starts = await consumer.beginning_offsets(list(partitions))
        try:
            await consumer.commit(dict(starts))
        except KafkaError as exc:
            log.info("committing the start of rewound partitions failed (%s)", exc)

    def takes_wakeups(self) -> bool:
        """True while this member consumes (connected, not stopping): a wake-up message is
        then taken, and its Kafka copy follows it (:meth:`_accept`)."""
        return self._consumer is not None and not self._stop_fetch.is_set()

    def owns(self, partition: int) -> bool:
        """Whether ``partition`` of the deliveries topic is assigned to this member now."""
        consumer = self._consumer
        return consumer is not None and TopicPartition(self.topic, partition) in \
            consumer.assignment()

    def readiness(self) -> str | None:
        """None while the consumer has a working assignment; otherwise why not (``kafka: ...``)."""
        now = time.monotonic()
        if self._closing.is_set() or self._stop_fetch.is_set():
            return "kafka: consumer stopping"
        if self._consumer is None:
            return "kafka: consumer not connected"
        if self._stalled_since is not None and now - self._stalled_since > READY_STALL_S:
            return "kafka: consumer stalled in a group rebalance"
        if not self._assigned:
            return "kafka: no partitions assigned to this dispatcher"
        if now - self._check_ok_at > READY_STALE_S:
            return "kafka: the log ends of the assigned partitions cannot be read"
        return None

    def on_joined(self, consumer: AIOKafkaConsumer) -> int | None:
        """A join of the group completed: note its generation (returned; None when the library
        does not say), and a coordinator that forgot the group (:func:`group_reset`) for the
        next check, which runs at once."""
        coordinator: Any = getattr(consumer, "_coordinator", None)
        joined = getattr(coordinator, "generation", None)
        if not isinstance(joined, int):
            return None
        if group_reset(self._generation, joined):
            self._group_reset = f"generation {self._generation} -> {joined}"
            self._check_due = True
        self._generation = joined
        return joined

    async def on_revoked(self, revoked: set[TopicPartition]) -> None:
        """Rebalance: drop waiting work of ``revoked``, commit what is durable, stop tracking."""
        self._pipeline.revoke(revoked)
        if self._consumer is not None:
            with contextlib.suppress(ConfigError):
                await self._commit(self._consumer, revoked)
        self._pipeline.tracker.drop(set(revoked))
        self._assigned = 0
        self._metrics.assigned_partitions.set(0)
        if revoked:
            log.info("revoked %d partitions", len(revoked))

    async def _close(self, consumer: AIOKafkaConsumer) -> None:
        """End a session: commit what is durable, drop the pipeline's waiting work, stop the
        consumer (it leaves the group). A session ended because the broker stopped answering
        (``_unreachable``) skips the commit and gives the stop ``UNREACHABLE_STOP_S``: neither
        would be answered, and waiting 5 s and 10 s for that only delays the new consumer
        (the offsets stay as last committed; what they do not cover is claimed again, which
        Postgres makes harmless)."""
        if self._lost_pending is None and not self._repair_topic and not self._unreachable:
            # offsets of a log that is gone would park the next session above the new end
            with contextlib.suppress(KafkaError, OSError, ConfigError):
                await bounded(self._maybe_commit(consumer, force=True), 5.0)
        self._pipeline.revoke(None)
        self._pipeline.tracker.drop(None)
        self._consumer = None
        self._assigned = 0
        self._checked_assignment = frozenset()
        with contextlib.suppress(KafkaError, OSError):
            await bounded(consumer.stop(), UNREACHABLE_STOP_S if self._unreachable else 10.0)
