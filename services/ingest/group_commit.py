"""Group commit: many concurrent requests share one transaction and one fsync.

Requests :meth:`GroupCommitter.submit` a list of items (one event, or a batch request's valid
events) and wait. One collector task closes a batch ``max_wait_s`` after its first item arrived
or as soon as it holds ``max_items``, then hands it to the commit function on one of
``max_in_flight`` concurrent commit tasks. While every commit slot is busy the open batch keeps
filling (up to ``max_items``), so batches grow exactly when the database is the bottleneck.

A submission is never split across batches: every item of one request commits in the same
transaction, or none does. The commit function returns one outcome per item; if it raises, every
request of that batch (and only that batch) gets the error. Nothing is answered before the
commit function returned, i.e. before the transaction committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Generic, TypeVar

import asyncpg
import orjson

from services.ingest.context import IngestContext
from services.ingest.endpoint_cache import EndpointCache
from services.ingest.event_validation import EventInput, webhook_body
from services.ingest.events_repo import (
    DeliveryRow,
    EventRow,
    allocate_sequences,
    insert_deliveries,
    insert_events,
    lock_live_endpoints,
)
from services.ingest.idempotency import (
    Accepted,
    KeyClaim,
    Outcome,
    account_key,
    claim_keys,
    resolve_outcomes,
)
from shared.adapters.kafka.publisher import Message
from shared.adapters.kafka.topics import DELIVERIES
from shared.adapters.pg.outbox import insert_outbox
from shared.core.delivery_message import DeliveryMessage, encode_delivery_message
from shared.core.errors import ApiError, Unavailable
from shared.core.idempotency import AccountKey, StoredKey, first_uses
from shared.core.ids import new_id
from shared.core.matching import matches
from shared.core.timefmt import format_ts, utcnow
from shared.logging import fields

T = TypeVar("T")
R = TypeVar("R")

log = logging.getLogger(__name__)

CommitFn = Callable[[list[T]], Awaitable[list[R]]]


@dataclass(slots=True)
class _Submission(Generic[T, R]):
    items: Sequence[T]
    future: asyncio.Future[list[R]]
    arrived: float = field(default_factory=time.monotonic)


class GroupCommitter(Generic[T, R]):
    """Collects items from concurrent callers into batches committed by ``commit``.

    ``commit(items)`` must return exactly one outcome per item, in order, and raise only when
    nothing of the batch was committed. An ApiError it raises reaches the callers as is; any
    other exception is logged and becomes 503 ``unavailable``.
    """

    def __init__(self, commit: CommitFn[T, R], *, max_items: int, max_wait_s: float,
                 max_in_flight: int = 2) -> None:
        self._commit = commit
        self._max_items = max_items
        self._max_wait_s = max_wait_s
        self._slots = asyncio.Semaphore(max_in_flight)
        self._pending: deque[_Submission[T, R]] = deque()
        self._pending_items = 0
        self._arrived = asyncio.Event()
        self._full = asyncio.Event()
        self._commits: set[asyncio.Task[None]] = set()
        self._collector: asyncio.Task[None] | None = None
        self._closing = False

    @property
    def in_flight(self) -> int:
        """Commit transactions running right now."""
        return len(self._commits)

    def start(self) -> None:
        """Start the collector task (inside the running loop)."""
        self._collector = asyncio.create_task(self._collect(), name="group-commit")

    async def submit(self, items: Sequence[T]) -> list[R]:
        """Queue ``items`` for the next batch and wait until it committed; one outcome per item.

        Raises Unavailable (503) when shutting down or when the batch failed to commit; an
        ApiError raised by the commit function is re-raised as is.
        """
        if self._closing or self._collector is None:
            raise Unavailable("ingest is shutting down; retry later")
        if not items:
            return []
        future: asyncio.Future[list[R]] = asyncio.get_running_loop().create_future()
        self._pending.append(_Submission(items, future))
        self._pending_items += len(items)
        self._arrived.set()
        if self._pending_items >= self._max_items:
            self._full.set()
        return await future

    async def stop(self) -> None:
        """Stop accepting, commit everything already queued, wait for every commit to end."""
        self._closing = True
        self._full.set()
        self._arrived.set()
        if self._collector is not None:
            await self._collector
        if self._commits:
            await asyncio.gather(*self._commits, return_exceptions=True)

    async def _collect(self) -> None:
        while True:
            if not self._pending:
                if self._closing:
                    return
                self._arrived.clear()
                await self._arrived.wait()
                continue
            await self._wait_until_closed()
            await self._slots.acquire()
            batch = self._take_batch()
            task = asyncio.create_task(self._run_commit(batch))
            self._commits.add(task)
            task.add_done_callback(self._commits.discard)

    async def _wait_until_closed(self) -> None:
        """Return when the oldest pending item waited ``max_wait_s`` or the batch is full."""
        remaining = self._pending[0].arrived + self._max_wait_s - time.monotonic()
        if self._closing or remaining <= 0 or self._pending_items >= self._max_items:
            return
        self._full.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(remaining):
                await self._full.wait()

    def _take_batch(self) -> list[_Submission[T, R]]:
        batch: list[_Submission[T, R]] = []
        count = 0
        while self._pending:
            size = len(self._pending[0].items)
            if batch and count + size > self._max_items:
                break
            batch.append(self._pending.popleft())
            count += size
        self._pending_items -= count
        if self._pending_items < self._max_items:
            self._full.clear()
        return batch

    async def _run_commit(self, batch: list[_Submission[T, R]]) -> None:
        try:
            items = [item for sub in batch for item in sub.items]
            try:
                outcomes = await self._commit(items)
            except ApiError as exc:
                _fail(batch, exc)
                return
            except Exception as exc:
                log.warning("group commit of %d items failed: %r", len(items), exc,
                            exc_info=not isinstance(exc, OSError | TimeoutError))
                _fail(batch, Unavailable("the event store is unavailable; retry later"))
                return
            if len(outcomes) != len(items):
                log.error("group commit returned %d outcomes for %d items", len(outcomes),
                          len(items))
                _fail(batch, Unavailable("internal error; retry later"))
                return
            _resolve(batch, outcomes)
        finally:
            self._slots.release()


def _fail(batch: Sequence[_Submission[T, R]], error: ApiError) -> None:
    for sub in batch:
        if not sub.future.done():
            sub.future.set_exception(error)


def _resolve(batch: Sequence[_Submission[T, R]], outcomes: Sequence[R]) -> None:
    start = 0
    for sub in batch:
        end = start + len(sub.items)
        if not sub.future.done():
            sub.future.set_result(list(outcomes[start:end]))
        start = end


# --------------------------------------------------------------------------- events


@dataclass(slots=True)
class _Draft:
    """An event about to be inserted; ``endpoints`` narrows to live ones inside the commit."""

    index: int
    event: EventInput
    event_id: str
    endpoints: list[str]
    response: bytes = b""


def _now_ms() -> datetime:
    """Now, truncated to milliseconds: stored ``created_at`` equals the rendered timestamp."""
    now = utcnow()
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


class EventWriter:
    """The commit function of the events group commit: one transaction per batch.

    In that transaction: share-lock the matched endpoints that are still enabled and not
    deleted, claim idempotency keys, insert events, allocate ordering sequences, insert one
    ``pending`` delivery and one outbox message per (event, live matched endpoint). After the
    commit the outbox rows go to the flusher (a broker outage leaves them to the relay and
    never fails the request). Raises the database's errors when nothing was committed.
    """

    def __init__(self, ctx: IngestContext, cache: EndpointCache) -> None:
        self._pool = ctx.pool
        self._flusher = ctx.flusher
        self._metrics = ctx.metrics
        self._cache = cache
        self._first_delay = timedelta(seconds=ctx.settings.common.retry_schedule[0])

    async def commit(self, events: list[EventInput]) -> list[Outcome]:
        """Commit ``events`` (one group); one outcome per event, in order."""
        now = _now_ms()
        routes = await self._cache.routes_for_many({e.account_id for e in events})
        keys = [account_key(e) for e in events]
        first = first_uses(keys)
        drafts = [
            _Draft(i, e, new_id("evt"), [r.id for r in routes.get(e.account_id, ())
                                         if matches(r.event_types, e.type)])
            for i, e in enumerate(events) if keys[i] is None or first[keys[i]] == i  # type: ignore[index]
        ]
        started = time.perf_counter()
        async with self._pool.acquire() as conn, conn.transaction():
            won, taken = await self._prepare(conn, drafts, now)
            inserted = [d for d in drafts if account_key(d.event) in won or
                        d.event.idempotency_key is None]
            ids, messages = await self._insert(conn, inserted, now)
        self._flusher.submit(ids, messages)
        elapsed = time.perf_counter() - started
        outcomes = resolve_outcomes(events, first, {d.index: d.response for d in drafts},
                                    won, taken)
        self._observe(len(events), inserted, len(messages), outcomes, elapsed)
        return outcomes

    async def _prepare(self, conn: asyncpg.Connection, drafts: list[_Draft],
                       now: datetime) -> tuple[set[AccountKey], dict[AccountKey, StoredKey]]:
        """Narrow fan-out to live endpoints, render responses, claim idempotency keys.

        The cache proposed the endpoints; the database decides: an endpoint deleted, disabled
        or re-subscribed (patterns no longer matching) since the cache read is dropped.
        """
        live = await lock_live_endpoints(conn, [ep for d in drafts for ep in d.endpoints])
        created_at = format_ts(now)
        for d in drafts:
            d.endpoints = [ep for ep in d.endpoints
                           if ep in live and matches(live[ep], d.event.type)]
            d.response = orjson.dumps({
                "id": d.event_id, "account_id": d.event.account_id, "type": d.event.type,
                "ordering_key": d.event.ordering_key, "created_at": created_at,
                "delivery_count": len(d.endpoints)})
        claims = [KeyClaim(d.event.account_id, d.event.idempotency_key, d.event.request_hash,
                           d.event_id, d.response)
                  for d in drafts
                  if d.event.idempotency_key is not None and d.event.request_hash is not None]
        return await claim_keys(conn, claims, now)

    async def _insert(self, conn: asyncpg.Connection, drafts: list[_Draft],
                      now: datetime) -> tuple[list[int], list[Message]]:
        """Insert events, deliveries and outbox messages; returns the outbox ids and messages."""
        timestamp = format_ts(now) or ""
        await insert_events(conn, [
            EventRow(d.event_id, d.event.account_id, d.event.type, d.event.ordering_key,
                     webhook_body(d.event_id, timestamp, d.event), len(d.endpoints))
            for d in drafts], now)
        counts: Counter[tuple[str, str]] = Counter(
            (ep, d.event.ordering_key) for d in drafts if d.event.ordering_key is not None
            for ep in d.endpoints)
        next_sequence = await allocate_sequences(conn, dict(counts))
        rows: list[DeliveryRow] = []
        for d in drafts:
            key = d.event.ordering_key
            for ep in d.endpoints:
                sequence = None
                if key is not None:
                    sequence = next_sequence[(ep, key)]
                    next_sequence[(ep, key)] = sequence + 1
                rows.append(DeliveryRow(new_id("dlv"), d.event_id, ep, d.event.account_id,
                                        key, sequence))
        await insert_deliveries(conn, rows, now, now + self._first_delay)
        messages = [_message(r) for r in rows]
        return await insert_outbox(conn, messages), messages

    def _observe(self, batch: int, inserted: list[_Draft], deliveries: int,
                 outcomes: list[Outcome], elapsed: float) -> None:
        metrics = self._metrics
        replays = sum(1 for o in outcomes if isinstance(o, Accepted) and o.replayed)
        metrics.batch_size.observe(batch)
        metrics.commit_seconds.observe(elapsed)
        metrics.events_accepted.inc(len(inserted))
        metrics.deliveries_created.inc(deliveries)
        if replays:
            metrics.idempotent_replays.inc(replays)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("group commit", extra=fields(
                batch_size=batch, events=len(inserted), deliveries=deliveries,
                replays=replays, commit_ms=round(elapsed * 1000, 3)))
            for d in inserted:
                log.debug("event accepted", extra=fields(
                    event_id=d.event_id, account_id=d.event.account_id,
                    delivery_count=len(d.endpoints)))


def _message(row: DeliveryRow) -> Message:
    value = DeliveryMessage(row.id, row.event_id, row.endpoint_id, row.account_id,
                            row.ordering_key, row.sequence, 0)
    return Message(DELIVERIES, value.key, encode_delivery_message(value))
