"""Group commit: many concurrent requests share one transaction and one fsync.

Requests :meth:`GroupCommitter.submit` a list of items (one event, or a batch request's valid
events) and wait. The batching itself is :class:`shared.batching.BatchCollector`: a batch closes
``max_wait_s`` after its first item arrived (at once when no company is expected:
:class:`~shared.core.company.CompanyForecast`) or as soon as it holds ``max_items``, and is
committed on one of ``max_in_flight`` concurrent commit tasks; while every commit slot is busy
the open batch keeps filling, so batches grow exactly when the database is the bottleneck.

A submission is never split across batches: every item of one request commits in the same
transaction, or none does. The commit function returns one outcome per item; if it raises, every
request of that batch (and only that batch) gets the error, in the contract's terms. Nothing is
answered before the commit function returned, i.e. before the transaction committed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Hashable, Sequence
from datetime import datetime, timedelta
from typing import Generic, TypeVar

import asyncpg

from services.ingest.context import IngestContext
from services.ingest.endpoint_cache import EndpointCache
from services.ingest.event_validation import EventInput
from services.ingest.events_repo import BatchRows, BatchWritten, build_batch_rows, write_batch
from services.ingest.idempotency import (
    Accepted,
    Outcome,
    account_key,
    load_keys,
    resolve_outcomes,
)
from shared.adapters.kafka.publisher import Message
from shared.adapters.kafka.topics import DELIVERIES
from shared.batching import BatchCollector, CollectorClosed
from shared.core.company import CompanyForecast
from shared.core.errors import ApiError, Unavailable
from shared.core.event_fingerprint import WINDOW, AccountKey, StoredKey, first_uses
from shared.core.timefmt import format_ts, utcnow
from shared.core.wakeup import WakeupWindow
from shared.logging import fields

T = TypeVar("T")
R = TypeVar("R")

log = logging.getLogger(__name__)
_DB_ERRORS = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError)

CommitFn = Callable[[list[T]], Awaitable[list[R]]]


class GroupCommitter(Generic[T, R]):
    """Collects items from concurrent callers into batches committed by ``commit``.

    ``commit(items)`` must return exactly one outcome per item, in order, and raise only when
    nothing of the batch was committed. An ApiError it raises reaches the callers as is; any
    other exception (or a wrong number of outcomes) is logged once per batch and becomes 503
    ``unavailable``.
    """

    def __init__(self, commit: CommitFn[T, R], *, max_items: int, max_wait_s: float,
                 max_in_flight: int = 2) -> None:
        self._commit = commit
        self._company = CompanyForecast(max_wait_s)
        self._batches: BatchCollector[T, R] = BatchCollector(
            self._commit_in_contract_terms, max_items=max_items, max_wait_s=max_wait_s,
            max_in_flight=max_in_flight, name="group-commit")

    def start(self) -> None:
        """Start the collector task (inside the running loop)."""
        self._batches.start()

    async def submit(self, items: Sequence[T], source: Hashable = None) -> list[R]:
        """Queue ``items`` for the next batch and wait until it committed; one outcome per item.

        ``source``: who submits (the request's connection). The batch waits ``max_wait_s`` for
        company only while company is expected (:class:`CompanyForecast`: submissions at least
        once per wait, from more than one source); otherwise these items close it at once.

        Raises Unavailable (503) when shutting down or when the batch failed to commit; an
        ApiError raised by the commit function is re-raised as is.
        """
        wait = None if self._company.arrive(time.monotonic(), source) else 0.0
        try:
            future = self._batches.submit(items, wait)
        except CollectorClosed:
            raise Unavailable("ingest is shutting down; retry later") from None
        return await future

    async def stop(self) -> None:
        """Stop accepting, commit everything already queued, wait for every commit to end."""
        await self._batches.close()

    async def _commit_in_contract_terms(self, items: list[T]) -> list[R]:
        """``commit(items)``, its failures translated to the contract's errors."""
        try:
            outcomes = await self._commit(items)
        except ApiError:
            raise
        except Exception as exc:
            log.warning("group commit of %d items failed: %r", len(items), exc,
                        exc_info=not isinstance(exc, OSError | TimeoutError))
            raise Unavailable("the event store is unavailable; retry later") from exc
        if len(outcomes) != len(items):
            log.error("group commit returned %d outcomes for %d items", len(outcomes),
                      len(items))
            raise Unavailable("internal error; retry later")
        return outcomes


# --------------------------------------------------------------------------- events


def _now_ms() -> datetime:
    """Now, truncated to milliseconds: stored ``created_at`` equals the rendered timestamp."""
    now = utcnow()
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


class EventWriter:
    """The commit function of the events group commit: one statement per batch.

    Fan-out candidates come from the endpoint cache (event type patterns included; the cache
    is invalidated by NOTIFY on every endpoint change); :func:`events_repo.write_batch` keeps
    only endpoints that are still enabled and not deleted at commit, claims idempotency keys
    and writes events, deliveries and outbox messages atomically. While this process's
    traffic is low, the same statement notifies the messages on the dispatchers' wake-up
    channel (:mod:`shared.core.wakeup`): those rows are left to the dispatcher that takes
    them (or to the relay, if none does). After the commit the other outbox rows go to the
    flusher (a broker outage leaves them to the relay and never fails a request). Each
    concurrent commit uses its own
    long-lived pooled connection (no acquire/reset round trip per batch); :meth:`close` gives
    them back.
    """

    def __init__(self, ctx: IngestContext, cache: EndpointCache) -> None:
        self._pool = ctx.pool
        self._flusher = ctx.flusher
        self._metrics = ctx.metrics
        self._cache = cache
        self._first_delay = timedelta(seconds=ctx.settings.common.retry_schedule[0])
        self._wakeup = WakeupWindow()
        self._idle: list[asyncpg.Connection] = []

    async def commit(self, events: list[EventInput]) -> list[Outcome]:
        """Commit ``events`` (one group); one outcome per event, in order.

        Raises asyncpg/OSError errors when nothing was committed.
        """
        now = _now_ms()
        routes = await self._cache.routes_for_many({e.account_id for e in events})
        first = first_uses([account_key(e) for e in events])
        candidates = [i for i, e in enumerate(events)
                      if e.idempotency_key is None or first[(e.account_id, e.idempotency_key)] == i]
        rows = build_batch_rows(events, candidates, routes, format_ts(now) or "")
        started = time.perf_counter()
        written, taken = await self._write(rows, now, [
            key for i in candidates if (key := account_key(events[i])) is not None])
        published = written.outbox[written.notified:]  # the notified rows stay for the claim
        self._flusher.submit([outbox_id for outbox_id, _, _ in published],
                             [Message(DELIVERIES, key, value) for _, key, value in published])
        responses = {i: (rows.response_heads[j - 1] + f"{written.delivery_counts[j]}}}").encode()
                     for j, i in enumerate(candidates, start=1) if j in written.delivery_counts}
        won = {k for i in responses if (k := account_key(events[i])) is not None}
        outcomes = resolve_outcomes(events, first, responses, won, taken)
        self._observe(len(events), rows, written, outcomes, time.perf_counter() - started)
        return outcomes

    async def _write(self, rows: BatchRows, now: datetime, keys: list[AccountKey]
                     ) -> tuple[BatchWritten, dict[AccountKey, StoredKey]]:
        """Run :func:`write_batch` on a held connection, then read back the stored records of
        the ``keys`` this batch did not win. Raises only when the batch was not committed: a
        failed read-back leaves those requests without a record (they are answered 503)."""
        notify = bool(rows.pair_deliveries) and self._wakeup.should_notify(
            time.monotonic(), len(rows.pair_deliveries))
        conn = self._idle.pop() if self._idle else await self._pool.acquire()
        try:
            written = await write_batch(conn, rows, now, now - WINDOW, now + self._first_delay,
                                        notify)
        except BaseException:
            await self._pool.release(conn)
            raise
        won = {(rows.account_ids[j - 1], rows.idem_keys[j - 1]) for j in written.delivery_counts}
        try:
            taken = await load_keys(conn, [k for k in keys if k not in won])
        except _DB_ERRORS as exc:
            log.warning("reading back idempotency records failed: %r", exc)
            await self._pool.release(conn)
            return written, {}
        self._idle.append(conn)
        return written, taken

    async def close(self) -> None:
        """Give the held connections back to the pool."""
        idle, self._idle = self._idle, []
        for conn in idle:
            await self._pool.release(conn)

    def _observe(self, batch: int, rows: BatchRows, written: BatchWritten,
                 outcomes: list[Outcome], elapsed: float) -> None:
        metrics = self._metrics
        replays = sum(1 for o in outcomes if isinstance(o, Accepted) and o.replayed)
        metrics.batch_size.observe(batch)
        metrics.commit_seconds.observe(elapsed)
        metrics.events_accepted.inc(len(written.delivery_counts))
        metrics.deliveries_created.inc(len(written.outbox))
        if replays:
            metrics.idempotent_replays.inc(replays)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("group commit", extra=fields(
                batch_size=batch, events=len(written.delivery_counts),
                deliveries=len(written.outbox), notified=written.notified, replays=replays,
                commit_ms=round(elapsed * 1000, 3)))
            for j, count in written.delivery_counts.items():
                log.debug("event accepted", extra=fields(
                    event_id=rows.ids[j - 1], account_id=rows.account_ids[j - 1],
                    delivery_count=count))
