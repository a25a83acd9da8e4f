"""Batching: gather concurrent callers' work into one call (one transaction, one fsync).

A :class:`BatchCollector` takes *submissions* (lists of items) from any number of callers and
hands them to its ``flush`` function in batches. A batch closes ``max_wait_s`` after its oldest
submission arrived (a submission may ask for a shorter wait of its own: the batch then closes
at the earliest of its submissions' deadlines), or as soon as it holds ``max_items``; it is
flushed on one of ``max_in_flight`` concurrent flush tasks. While every flush slot is busy the
open batch keeps filling (up to ``max_items``), so batches grow exactly when the flush is the
bottleneck.

Contract of the flush function: ``flush(items)`` returns exactly one result per item, in order.
A submission is never split across batches: its items are flushed in the same call, or none is.
Each submitter's future gets the slice of results of its own items; when the flush raises (or
returns the wrong number of results: :class:`BatchResultMismatch`), every submission of that
batch, and only of that batch, gets that exception. Nothing is resolved before the flush
returned. Exceptions are passed on as they are: translating them for the callers (a 503, a
retry, a log line) is the owner's job, done in its flush function.

Ingest's group commit of events and the dispatcher's outcome writer are both built on it.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from shared.tasks import cancel_and_wait

T = TypeVar("T")
R = TypeVar("R")

FlushFn = Callable[[list[T]], Awaitable[list[R]]]


class CollectorClosed(RuntimeError):
    """:meth:`BatchCollector.submit` was called before :meth:`~BatchCollector.start` or after
    :meth:`~BatchCollector.close` / :meth:`~BatchCollector.abort` began: nothing was queued."""


class BatchResultMismatch(RuntimeError):
    """The flush function returned a number of results different from the items it was given;
    every submission of that batch fails with this error."""


@dataclass(slots=True)
class _Submission(Generic[T, R]):
    items: Sequence[T]
    future: asyncio.Future[list[R]]
    deadline: float   # monotonic time by which its batch closes


class BatchCollector(Generic[T, R]):
    """Collects submissions from concurrent callers into batches flushed by ``flush``.

    Single event loop; not thread-safe. ``max_items`` >= 1 bounds a batch, except that a single
    submission larger than it is flushed alone; ``max_wait_s`` >= 0; ``max_in_flight`` >= 1.
    """

    def __init__(self, flush: FlushFn[T, R], *, max_items: int, max_wait_s: float,
                 max_in_flight: int = 1, name: str = "batch-collector") -> None:
        if max_items < 1 or max_wait_s < 0 or max_in_flight < 1:
            raise ValueError("max_items and max_in_flight must be >= 1, max_wait_s >= 0")
        self._flush = flush
        self._max_items = max_items
        self._max_wait_s = max_wait_s
        self._name = name
        self._slots = asyncio.Semaphore(max_in_flight)
        self._pending: deque[_Submission[T, R]] = deque()
        self._pending_items = 0
        self._arrived = asyncio.Event()
        self._full = asyncio.Event()   # full, closing, or the deadline moved earlier
        self._deadline = float("inf")   # earliest deadline of the pending submissions
        self._idle = asyncio.Event()
        self._idle.set()
        self._flushes: dict[asyncio.Task[None], list[_Submission[T, R]]] = {}
        self._running = 0
        self._collector: asyncio.Task[None] | None = None
        self._closing = False

    @property
    def accepting(self) -> bool:
        """True between :meth:`start` and the beginning of :meth:`close` or :meth:`abort`."""
        return self._collector is not None and not self._closing

    def start(self) -> None:
        """Start the collector task (inside the running loop)."""
        self._collector = asyncio.create_task(self._collect(), name=self._name)

    def submit(self, items: Sequence[T], max_wait_s: float | None = None
               ) -> asyncio.Future[list[R]]:
        """Queue ``items`` for the next batch; never blocks. ``max_wait_s``: how long these
        items may wait for their batch to close, when shorter than the collector's (a caller
        someone is waiting on); the collector's ``max_wait_s`` when None or longer.

        The returned future resolves to one result per item once their batch was flushed, or
        holds the batch's exception; it is cancelled by :meth:`abort`. An empty submission
        resolves at once to ``[]``. Raises :class:`CollectorClosed` when not accepting.
        """
        if not self.accepting:
            raise CollectorClosed(f"{self._name} is not accepting work")
        future: asyncio.Future[list[R]] = asyncio.get_running_loop().create_future()
        if not items:
            future.set_result([])
            return future
        wait = self._max_wait_s if max_wait_s is None else min(max(0.0, max_wait_s),
                                                                self._max_wait_s)
        deadline = time.monotonic() + wait
        self._pending.append(_Submission(items, future, deadline))
        self._pending_items += len(items)
        self._idle.clear()
        self._arrived.set()
        if deadline < self._deadline:
            self._deadline = deadline
            self._full.set()   # the collector recomputes how long to wait
        if self._pending_items >= self._max_items:
            self._full.set()
        return future

    async def wait_idle(self) -> None:
        """Return once nothing is queued and no flush is running (at once when idle)."""
        await self._idle.wait()

    async def close(self) -> None:
        """Stop accepting, flush everything already queued, wait for every flush to end."""
        self._closing = True
        self._full.set()
        self._arrived.set()
        if self._collector is not None:
            await self._collector
        if self._flushes:
            await asyncio.gather(*self._flushes, return_exceptions=True)

    async def abort(self) -> None:
        """Stop accepting and cancel: running flushes are cancelled and awaited, and every
        future not resolved yet (queued or in a cancelled flush) is cancelled."""
        self._closing = True
        in_flight = [sub for batch in self._flushes.values() for sub in batch]
        await cancel_and_wait(self._collector, *self._flushes)
        for sub in [*in_flight, *self._pending]:
            sub.future.cancel()
        self._pending.clear()
        self._deadline = float("inf")
        self._pending_items = 0
        self._running = 0
        self._idle.set()

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
            self._running += 1
            task = asyncio.create_task(self._run_flush(batch), name=f"{self._name}-flush")
            self._flushes[task] = batch
            task.add_done_callback(self._forget_flush)

    def _forget_flush(self, task: asyncio.Task[None]) -> None:
        self._flushes.pop(task, None)

    async def _wait_until_closed(self) -> None:
        """Return when the earliest deadline of the pending submissions passed, the batch
        is full, or the collector is closing."""
        while True:
            remaining = self._deadline - time.monotonic()
            if self._closing or remaining <= 0 or self._pending_items >= self._max_items:
                return
            self._full.clear()
            try:
                async with asyncio.timeout(remaining):
                    await self._full.wait()
            except TimeoutError:
                return

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
        self._deadline = min((sub.deadline for sub in self._pending), default=float("inf"))
        if self._pending_items < self._max_items:
            self._full.clear()
        return batch

    async def _run_flush(self, batch: list[_Submission[T, R]]) -> None:
        try:
            items = [item for sub in batch for item in sub.items]
            try:
                results = await self._flush(items)
            except asyncio.CancelledError:
                for sub in batch:
                    sub.future.cancel()
                raise
            except Exception as exc:
                _fail(batch, exc)
                return
            if len(results) != len(items):
                _fail(batch, BatchResultMismatch(
                    f"{self._name}: flush returned {len(results)} results for {len(items)} items"))
                return
            _resolve(batch, results)
        finally:
            self._running -= 1
            self._slots.release()
            if not self._pending and not self._running:
                self._idle.set()


def _fail(batch: Sequence[_Submission[T, R]], error: BaseException) -> None:
    for sub in batch:
        if not sub.future.done():
            sub.future.set_exception(error)


def _resolve(batch: Sequence[_Submission[T, R]], results: Sequence[R]) -> None:
    start = 0
    for sub in batch:
        end = start + len(sub.items)
        if not sub.future.done():
            sub.future.set_result(list(results[start:end]))
        start = end
