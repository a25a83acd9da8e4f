"""The dispatcher's in-process pipeline: gates -> claim -> attempt tasks -> group commit.

The consumer hands messages to :meth:`Pipeline.accept` and never waits for an endpoint: the
claim loop batches waiting messages into one claim transaction, every claimed delivery is
sent by its own task (sleeping first until its rate slot), and outcomes go to the
:class:`OutcomeWriter`. A message's offset becomes committable once its claim settled it or
its outcome is recorded (:class:`OffsetTracker`).

Shutdown (:meth:`Pipeline.shutdown`): stop claiming, forget waiting messages (their offsets
are not committed, so the group delivers them again), give in-flight attempts ``drain_s`` to
finish, cancel the rest and release their leases, then flush the outcome writer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import Counter
from collections.abc import Hashable, Iterable

import asyncpg

from services.dispatcher.attempts import perform
from services.dispatcher.claims import ClaimResult, ClaimStore
from services.dispatcher.gates import Gates
from services.dispatcher.metrics import DispatcherMetrics
from services.dispatcher.model import Claimed, Finished, Pending
from services.dispatcher.offsets import OffsetTracker, Ticket
from services.dispatcher.outcomes import OutcomeWriter
from services.dispatcher.rate_slots import GiveUp, SendWindow, WaitFor, send_verdict
from services.dispatcher.settings import DispatcherSettings
from shared.adapters.http_client import WebhookClient
from shared.core.backoff import CircuitState
from shared.core.decision import Dead, Succeeded, decide
from shared.core.delivery_message import DeliveryMessage
from shared.core.per_second import PerSecondCount
from shared.core.timefmt import utcnow
from shared.outbox_relay import OutboxFlusher
from shared.tasks import wait_event

log = logging.getLogger(__name__)

CLAIM_BATCH = 500
# claim settlements after which no later message of the same generation can need handling
# (the Kafka copy of such a wake-up is done without a claim: OffsetTracker.follow)
FINAL_SETTLEMENTS = frozenset({"cancelled", "endpoint_disabled", "skipped_finished",
                               "skipped_stale", "skipped_unknown"})
_DB_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError)
_RELEASE_SQL = """
UPDATE deliveries SET lease_owner = NULL, lease_until = NULL, updated_at = now()
WHERE id = ANY($1::text[]) AND lease_owner = $2
"""
# A missed rate slot: end the lease (updated_at stays: it dates the delivery's queueing, and the
# first-attempt delay counts from it) and, for a circuit probe, end the probe as its outcome
# would, so the next claim may probe at once instead of waiting for the lease to expire.
_GIVE_UP_SQL = """
WITH released AS (
    UPDATE deliveries SET lease_owner = NULL, lease_until = NULL
    WHERE id = $1 AND lease_owner = $2
    RETURNING endpoint_id
)
UPDATE endpoint_health h SET probe_until = NULL, updated_at = now()
FROM released WHERE $3 AND h.endpoint_id = released.endpoint_id
"""


class Pipeline:
    """One per dispatcher process. Single event loop; not thread-safe."""

    def __init__(self, settings: DispatcherSettings, pool: asyncpg.Pool, owner: str,
                 claims: ClaimStore, client: WebhookClient, flusher: OutboxFlusher,
                 metrics: DispatcherMetrics, outcome_pool: asyncpg.Pool | None = None) -> None:
        """``outcome_pool``: the outcome writer's generically planning pool for small
        batches (one flush at a time, so one connection is enough); see :class:`OutcomeWriter`."""
        self._settings = settings
        self._pool = pool
        self._owner = owner
        self._claims = claims
        self._client = client
        self._flusher = flusher
        self._metrics = metrics
        self._rng = random.Random()
        self.tracker = OffsetTracker()
        self.gates = Gates(settings.concurrency, settings.endpoint_concurrency,
                           settings.waiting_per_endpoint,
                           memory_wait_s=settings.sweep_stale_s / 2)
        self.writer = OutcomeWriter(
            pool, owner, settings.backoff, metrics, flusher.submit, self._recorded,
            batch_max=settings.outcome_batch_max, batch_wait_ms=settings.outcome_batch_wait_ms,
            linger_ms=settings.outcome_linger_ms, small_batch_pool=outcome_pool)
        # claim workers, each owning the endpoints of one shard (so their transactions never
        # wait for each other's endpoint locks), each with its own wake-up event
        self._wakes = [asyncio.Event() for _ in range(settings.claim_workers)]
        self._tasks: dict[str, tuple[asyncio.Task[None], Claimed]] = {}
        self._claimed_at: dict[str, float] = {}   # delivery id -> monotonic time of its claim
        self._claim_tasks: list[asyncio.Task[None]] = []
        self._claiming_shards: set[int] = set()   # shards in a claim transaction now
        self._lingering = False   # a claim worker is gathering before a light-traffic claim
        self._hurry = asyncio.Event()   # a message arrived that should not wait for company
        self._burst = False   # messages arrived together: company came, claim them together
        # shards whose messages arrived during a gathering worker's claim: claimed at once
        self._handed_back: set[int] = set()
        self._arrivals = PerSecondCount()   # messages accepted, for whether to gather
        self.circuits: dict[str, CircuitState] = {}

    # ------------------------------------------------------------------ consumer side
    def accept(self, ticket: Ticket, message: DeliveryMessage,
               outbox_id: int | None = None) -> None:
        """Queue a consumed message and wake the claim worker of its endpoint; never blocks.
        ``outbox_id``: the message's outbox row, for a message taken from the wake-up channel
        (its claim deletes the row, see :class:`Pending`)."""
        shard_key = self.gates.add(Pending(ticket, message, outbox_id=outbox_id))
        self._arrivals.add(time.monotonic())
        if message.ordering_key is not None:
            self._hurry.set()   # a key's next delivery: its key's throughput waits on it
        self._wakes[shard_key % len(self._wakes)].set()

    def arrived(self, count: int) -> None:
        """One wake-up notification brought ``count`` messages, already handed to
        :meth:`accept`. Several at once are the company a linger waits for (ingest's group
        commit gathered them): the next claim takes them from every shard at once, without
        lingering for more. Only the wake-up channel says this: it carries traffic only
        below a few hundred messages a second, where a claim's cost is what matters; under
        load (Kafka fetches) busy workers keep their own shards."""
        if count >= 2:
            self._burst = True
            self._hurry.set()

    def revoke(self, partitions: Iterable[Hashable] | None) -> None:
        """Forget waiting messages of ``partitions`` (all when None)."""
        self.gates.drop(partitions)

    @property
    def waiting(self) -> int:
        return self.gates.waiting

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        self.writer.start()
        self._claim_tasks = [asyncio.create_task(self._claim_loop(shard), name=f"claim-{shard}")
                             for shard in range(len(self._wakes))]

    async def shutdown(self, drain_s: float) -> None:
        """Stop claiming, drain or release in-flight attempts, flush outcomes."""
        for task in self._claim_tasks:
            task.cancel()
        await asyncio.gather(*self._claim_tasks, return_exceptions=True)
        self.gates.drop(None)
        tasks = [t for t, _ in self._tasks.values()]
        if tasks:
            await asyncio.wait(tasks, timeout=drain_s)
        leftover = {d: c for d, (t, c) in self._tasks.items() if not t.done()}
        for task, _ in self._tasks.values():
            task.cancel()
        await asyncio.gather(*(t for t, _ in self._tasks.values()), return_exceptions=True)
        await self.writer.drain(timeout_s=5.0)
        await self.writer.stop()
        if leftover:
            with contextlib.suppress(*_DB_ERRORS):
                await self._pool.execute(_RELEASE_SQL, sorted(leftover), self._owner)
            log.info("released %d leases at shutdown", len(leftover))

    # ------------------------------------------------------------------ claiming
    def _wake(self) -> None:
        for event in self._wakes:
            event.set()

    async def _claim_loop(self, shard: int) -> None:
        """Claim the shard's waiting requests, one transaction per round. A worker woken
        from idle first gathers for ``claim_linger_ms``: at everyday rates messages arrive a
        few milliseconds apart, and each claim transaction costs the same few round trips
        and a commit whether it carries one delivery or twenty. One worker gathers at a
        time and then takes every shard nobody is claiming (:meth:`_shards_to_take`); a
        worker woken meanwhile leaves its shard to it, and is woken to claim at once
        (without gathering again) if messages for it came during that claim. A message with
        an ordering key ends the gathering at once: each of a key's deliveries waits for the
        one before, so a linger would cap a busy key's rate. Under load a worker is never
        idle (messages arrive while it claims), so it never lingers; nor does a worker when
        messages are too rare for company to come (:meth:`_company_expected`). Messages that
        arrived together (:meth:`arrived`) are company already: the claim that takes them
        from every shard starts at once."""
        wake = self._wakes[shard]
        while True:
            timeout = self.gates.next_ready_in()
            was_idle = not wake.is_set()
            await wait_event(wake, timeout)
            if shard in self._claiming_shards:
                wake.clear()   # a gathering worker's claim holds this shard; it wakes us after
                continue
            handed_back = shard in self._handed_back
            self._handed_back.discard(shard)
            lingered = (was_idle and not handed_back and wake.is_set()
                        and self.gates.waiting > 0
                        and (self._burst or self._company_expected()))
            if lingered and self._lingering:
                wake.clear()   # another worker is gathering; its claim takes this shard too
                continue
            if lingered:
                await self._gather()
            wake.clear()
            shards = self._shards_to_take(shard, lingered)
            batch = self.gates.take(CLAIM_BATCH, shards, len(self._wakes))
            if not batch:
                continue
            self._claiming_shards.update(shards)
            try:
                await self._claim_batch(batch)
            finally:
                self._claiming_shards.difference_update(shards)
                if self.gates.waiting:   # what came for the other shards meanwhile: at once
                    for other in shards - {shard}:
                        self._handed_back.add(other)
                        self._wakes[other].set()

    def _company_expected(self) -> bool:
        """Whether gathering is worth its wait: messages arrive often enough that at least
        one more is expected within ``claim_linger_ms`` (counted over the last whole
        seconds). Below that rate (under 50 a second with the default 20 ms) a claim is
        cheap in total anyway, and a message is not kept waiting for company that will
        not come."""
        return self._arrivals.another_within(time.monotonic(),
                                             self._settings.claim_linger_ms / 1000.0)

    async def _gather(self) -> None:
        """Wait ``claim_linger_ms`` for company, or until a keyed message or several messages
        at once arrive."""
        self._lingering = True
        try:
            await wait_event(self._hurry, self._settings.claim_linger_ms / 1000.0)
        finally:
            self._lingering = False
            self._burst = False
            self._hurry.clear()

    def _shards_to_take(self, shard: int, lingered: bool) -> set[int]:
        """The claim shards a worker's next claim takes: its own; after a linger (traffic is
        light) also every shard no other worker is claiming, so that light traffic to many
        endpoints still shares one transaction. A worker finding its shard taken that way
        waits until woken when that claim ends."""
        if not lingered:
            return {shard}
        return {s for s in range(len(self._wakes)) if s not in self._claiming_shards}

    async def _claim_batch(self, batch: list[Pending]) -> None:
        """One claim transaction for ``batch``, its result applied; on failure every request
        waits 0.5 s and is claimed again."""
        started = time.perf_counter()
        try:
            result = await self._claims.claim(batch)
        except Exception as exc:  # a bug must not stop claiming: log it, retry later
            if isinstance(exc, _DB_ERRORS):
                log.warning("claim of %d messages failed (%s); retrying", len(batch), exc)
            else:
                log.exception("claim of %d messages crashed; retrying", len(batch))
            for pending in batch:
                self.gates.defer(pending, 0.5)
            await asyncio.sleep(0.2)
            self._wake()
            return
        self._metrics.claim_seconds.observe(time.perf_counter() - started)
        self._metrics.claim_batch.observe(len(batch))
        self._apply(result)
        if self.gates.waiting:
            self._wake()

    def _apply(self, result: ClaimResult) -> None:
        self._flusher.submit(result.outbox_ids, result.messages)
        for endpoint_id, (max_in_flight, rate) in result.endpoint_limits.items():
            self.gates.learn(endpoint_id, max_in_flight, rate,
                             result.endpoint_leases.get(endpoint_id))
        self.circuits.update(result.circuits)
        labels: Counter[str] = Counter()
        for pending, label in result.settled:
            self.gates.settled(pending)
            self.tracker.done(pending.ticket, final=label in FINAL_SETTLEMENTS)
            labels[label] += 1
        for pending, delay in result.deferred:
            if self.tracker.is_current(pending.ticket):
                self.gates.defer(pending, delay)
            else:
                self.gates.settled(pending)
        labels["deferred"] += len(result.deferred)
        claimed_at = time.monotonic()
        for claimed in result.claimed:
            self.gates.started(claimed.pending)
            self._claimed_at[claimed.delivery_id] = claimed_at
            task = asyncio.create_task(self._guarded_attempt(claimed), name="attempt")
            self._tasks[claimed.delivery_id] = (task, claimed)
        labels["claimed"] += len(result.claimed)
        for label, count in labels.items():
            if count:
                self._metrics.claims.labels(label).inc(count)

    # ------------------------------------------------------------------ attempts
    async def _guarded_attempt(self, claimed: Claimed) -> None:
        """Run an attempt; a bug must not leak its slot or pin its partition's offset (the
        lease then expires and the sweeper re-publishes the delivery)."""
        try:
            await self._attempt(claimed)
        except Exception:
            log.exception("attempt crashed", extra={"pw": {
                "delivery_id": claimed.delivery_id, "endpoint_id": claimed.endpoint_id}})
            self._tasks.pop(claimed.delivery_id, None)
            self._claimed_at.pop(claimed.delivery_id, None)
            self.gates.finished(claimed.endpoint_id)
            self.tracker.done(claimed.pending.ticket)

    async def _attempt(self, claimed: Claimed) -> None:
        """Wait for the slot, then send and submit the outcome; or, when a rate-limited send
        could not leave within the tolerance of its slot, send nothing and give the slot up
        (:meth:`_give_up_slot`). Nothing awaits between the verdict and the attempt's start."""
        window = SendWindow(claimed.send_at_s, claimed.send_by_s)
        while True:
            # the recorded start lies between two readings of the clock the window is on
            before = time.monotonic()
            started_at = utcnow()
            verdict = send_verdict(window, before, time.monotonic())
            if isinstance(verdict, WaitFor):
                await asyncio.sleep(verdict.seconds)
                continue
            if isinstance(verdict, GiveUp):
                await self._give_up_slot(claimed, verdict.late_s)
                return
            break
        started, result, detail = await perform(claimed, self._client, started_at)
        s = self._settings
        decision = decide(result, claimed.round_attempt_count + 1, s.common.retry_schedule,
                          utcnow(), self._rng, s.floors)
        if detail is not None:
            log.debug("attempt error %s", detail, extra={"pw": {
                "delivery_id": claimed.delivery_id, "endpoint_id": claimed.endpoint_id}})
        self.writer.submit(Finished(claimed, result, decision, started),
                           awaited=claimed.ordering_key is not None
                           or self.gates.awaits_slot(claimed.endpoint_id))

    async def _give_up_slot(self, claimed: Claimed, late_s: float) -> None:
        """End the lease of a delivery that was not sent and claim it again (a new claim
        reserves a new slot and checks everything afresh). The lease ends in Postgres before
        the request is queued again, so no other claim can find it leased by a task that is
        gone, and since nothing was sent nothing can be sent twice; a circuit probe ends its
        probe with it (``_GIVE_UP_SQL``). While Postgres cannot be
        reached the release is retried (50 ms doubling to 2 s) until it succeeds or the lease
        has expired anyway; the message's offset stays uncommitted throughout, so a crash
        meanwhile leaves the delivery to the partition's next owner or the sweeper."""
        self._metrics.rate_slots_missed.inc()
        log.info("rate slot missed by %.1f ms; claiming the delivery again", late_s * 1000,
                 extra={"pw": {"delivery_id": claimed.delivery_id,
                               "endpoint_id": claimed.endpoint_id,
                               "event_id": claimed.event_id}})
        expires = (claimed.send_at_s + self._settings.delivery_timeout_s
                   + self._settings.lease_margin_s)
        pause = 0.05
        while True:
            try:
                await self._pool.execute(_GIVE_UP_SQL, claimed.delivery_id, self._owner,
                                         claimed.probe)
                break
            except _DB_ERRORS as exc:
                if time.monotonic() > expires:
                    log.warning("releasing a missed slot's lease failed (%s); it expires",
                                exc, extra={"pw": {"delivery_id": claimed.delivery_id,
                                                   "endpoint_id": claimed.endpoint_id}})
                    break
                await asyncio.sleep(pause)
                pause = min(2.0, pause * 2)
        self._tasks.pop(claimed.delivery_id, None)
        self._claimed_at.pop(claimed.delivery_id, None)
        self.gates.returned(claimed.pending, self.tracker.is_current(claimed.pending.ticket))
        self._wake()

    def _recorded(self, batch: Iterable[Finished]) -> None:
        now = time.monotonic()
        for item in batch:
            claimed = item.claimed
            self._tasks.pop(claimed.delivery_id, None)
            claimed_at = self._claimed_at.pop(claimed.delivery_id, None)
            self.gates.finished(claimed.endpoint_id,
                                None if claimed_at is None else now - claimed_at)
            self.tracker.done(claimed.pending.ticket,
                              final=isinstance(item.decision, Succeeded | Dead))
        self._wake()
