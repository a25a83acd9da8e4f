"""Which Kafka offset each partition may commit: the lowest one whose outcome is not durable.

Every consumed message gets a :class:`Ticket`; the pipeline calls :meth:`OffsetTracker.done`
once the message's outcome is durable in Postgres (skipped, parked, cancelled, dead-lettered or
its attempt recorded). The committable offset of a partition is the smallest offset still
open, or one past the highest offset seen when none is open.

A partition's tracking can be dropped (revoked, broker restarted, consumer re-created): its
tickets then belong to an old epoch and ``done`` ignores them, so work finishing after a
rebalance can never move the new owner's offsets. Pure and single-threaded (one event loop).
"""

from __future__ import annotations

import heapq
from collections.abc import Hashable
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Ticket:
    """One consumed message: where it came from and the tracking epoch it belongs to."""

    partition: Hashable
    offset: int
    epoch: int


@dataclass
class _Partition:
    epoch: int
    open_heap: list[int] = field(default_factory=list)
    open_set: set[int] = field(default_factory=set)
    high: int = -1                   # highest offset seen
    committed: int | None = None     # last offset reported by mark_committed

    def lowest_open(self) -> int | None:
        while self.open_heap and self.open_heap[0] not in self.open_set:
            heapq.heappop(self.open_heap)
        return self.open_heap[0] if self.open_heap else None


class OffsetTracker:
    """Per-partition open offsets; see the module docstring."""

    def __init__(self) -> None:
        self._parts: dict[Hashable, _Partition] = {}
        self._epoch = 0
        self._went_back: set[Hashable] = set()

    def track(self, partition: Hashable, offset: int) -> Ticket:
        """Register a consumed message. An offset at or below one already seen means the log
        was reset (a broker that restarted empty): the partition starts a new epoch."""
        part = self._parts.get(partition)
        if part is not None and offset <= part.high:
            self._went_back.add(partition)
        if part is None or offset <= part.high:
            self._epoch += 1
            part = self._parts[partition] = _Partition(epoch=self._epoch)
        part.high = offset
        part.open_set.add(offset)
        heapq.heappush(part.open_heap, offset)
        return Ticket(partition, offset, part.epoch)

    def done(self, ticket: Ticket) -> None:
        """The ticket's outcome is durable. Stale tickets (older epoch) are ignored."""
        part = self._parts.get(ticket.partition)
        if part is not None and part.epoch == ticket.epoch:
            part.open_set.discard(ticket.offset)

    def is_current(self, ticket: Ticket) -> bool:
        """True while the ticket's partition is still tracked in the ticket's epoch."""
        part = self._parts.get(ticket.partition)
        return part is not None and part.epoch == ticket.epoch

    def committable(self, partitions: set[Hashable] | None = None) -> dict[Hashable, int]:
        """``{partition: next offset to commit}`` where it moved since the last commit."""
        out: dict[Hashable, int] = {}
        for key, part in self._parts.items():
            if partitions is not None and key not in partitions:
                continue
            if part.high < 0:
                continue
            low = part.lowest_open()
            offset = low if low is not None else part.high + 1
            if part.committed != offset:
                out[key] = offset
        return out

    def mark_committed(self, offsets: dict[Hashable, int]) -> None:
        """Record a successful commit, so ``committable`` only reports changes."""
        for key, offset in offsets.items():
            part = self._parts.get(key)
            if part is not None:
                part.committed = offset

    def drop(self, partitions: set[Hashable] | None = None) -> None:
        """Forget ``partitions`` (all when None); their outstanding tickets become stale."""
        if partitions is None:
            self._parts.clear()
        else:
            for key in partitions:
                self._parts.pop(key, None)

    def position(self, partition: Hashable) -> int | None:
        """One past the highest offset seen on ``partition`` (None before any)."""
        part = self._parts.get(partition)
        return None if part is None or part.high < 0 else part.high + 1

    def committed(self, partition: Hashable) -> int | None:
        """The offset last recorded by ``mark_committed`` for ``partition`` (None if none)."""
        part = self._parts.get(partition)
        return None if part is None else part.committed

    def take_went_back(self) -> set[Hashable]:
        """Partitions where ``track`` saw an offset at or below one already seen (the log was
        reset under us) since the last call; the set is emptied."""
        went_back, self._went_back = self._went_back, set()
        return went_back

    def open_count(self) -> int:
        """How many tracked messages are not done yet."""
        return sum(len(p.open_set) for p in self._parts.values())
