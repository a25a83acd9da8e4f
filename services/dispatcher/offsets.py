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

WAKEUP_PARTITION = "wakeup"  # tickets of messages taken from the wake-up channel (wakeup.py)
FINAL_KEPT = 10_000          # wake-up tickets remembered as final, for their Kafka copies


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
        self._followers: dict[Ticket, list[Ticket]] = {}  # leader -> same message, re-read
        self._final: dict[Ticket, None] = {}  # wake-up tickets done for good, oldest first

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

    def done(self, ticket: Ticket, final: bool = False) -> None:
        """The ticket's outcome is durable; ``final`` when the delivery is settled for good
        (succeeded, dead, cancelled, gone or stale), so no later message of the same
        generation can need handling. Stale tickets (older epoch) are ignored. Tickets
        following this one (:meth:`follow`) are done with it."""
        part = self._parts.get(ticket.partition)
        if part is not None and part.epoch == ticket.epoch:
            part.open_set.discard(ticket.offset)
            if final and ticket.partition == WAKEUP_PARTITION:
                self._final[ticket] = None
                if len(self._final) > FINAL_KEPT:
                    del self._final[next(iter(self._final))]
        for follower in self._followers.pop(ticket, ()):
            self.done(follower)

    def follow(self, ticket: Ticket, leader: Ticket) -> bool:
        """``ticket`` is the same message as ``leader`` read a second time (the Kafka copy of
        a wake-up): make it done when ``leader`` is, without handling it again. True when
        that is arranged (``leader`` still open) or already so (``leader`` done: ``ticket``
        is done now, but only when it was ``final``); False when ``leader`` was dropped
        (outcome unknown) or ended without settling the delivery for good (a retry, a park,
        a skip): ``ticket`` may then be a later announcement (the scheduler's, the
        sweeper's), and the caller must handle it on its own. A ticket attached while the
        leader is open was announced before the leader's outcome, which supersedes it."""
        part = self._parts.get(leader.partition)
        if part is None or part.epoch != leader.epoch:
            return False
        if leader.offset in part.open_set:
            self._followers.setdefault(leader, []).append(ticket)
        elif leader in self._final:
            self.done(ticket)
        else:
            return False
        return True

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
            self._followers.clear()
            self._final.clear()
        else:
            for key in partitions:
                self._parts.pop(key, None)
            for leader in [t for t in self._followers if t.partition in partitions]:
                del self._followers[leader]  # they stay open: their partitions re-read them

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
