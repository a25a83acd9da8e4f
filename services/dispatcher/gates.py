"""Per-endpoint gates inside one dispatcher: where consumed messages wait for their claim.

Isolation lives here. Each endpoint has its own queue and its own in-flight count, capped at
``min(max_in_flight, endpoint_concurrency)``; the whole process is capped at ``concurrency``.
:meth:`Gates.take` hands out work round-robin over endpoints, so a slow or saturated endpoint
only ever holds its own slots and never the queue of another.

Memory is bounded per process and per endpoint. The consumer stops fetching while
``max_waiting`` messages wait (Kafka is the buffer), and an endpoint's excess is handed to the
claim step with ``park_s`` set, which parks those deliveries in Postgres roughly when this
endpoint would reach them, releasing the memory and the Kafka offsets:

- An endpoint that fell behind (its oldest message has waited longer than ``memory_wait_s``)
  keeps only what it works off in ``memory_wait_s`` at its pace (at least its in-flight cap),
  so no message waits in memory until the sweeper would call it stale.
- Any other endpoint is not capped while memory is free: parking costs database writes and a
  Kafka round trip per delivery, so a burst (a backlog after an outage) is worked off from
  memory. Once the process holds ``max_waiting`` messages, fetching has stopped, and an
  endpoint with nothing in memory waits behind the others in Kafka. That is fine while every
  endpoint in memory works its queue off within ``memory_wait_s`` at its measured rate (the
  wait is bounded and parking would not speed anyone up); an endpoint that cannot keeps its
  fair share, ``max_waiting`` over the endpoints with waiting work (at least two, and at least
  ``waiting_per_endpoint``), and parks the rest, so fetching resumes for the others.

An endpoint's pace (:meth:`Gate.pace`) is the rate at which the endpoint completes attempts
across every dispatcher, not only in this one: a parked delivery is re-announced on the
endpoint's partition and comes back to whichever dispatcher owns it then, so its wait is the
endpoint's queue over the endpoint's pace. By Little's law that pace is the endpoint's leases
held at once across all dispatchers (counted by every claim, under the endpoint's row lock)
over the time a lease is held (claim to recorded outcome, the same for every dispatcher: it is
the receiver's answer time plus the rate slot's wait). This process's own completion rate would
be 1/D of it while D dispatchers share the endpoint (a rebalance, messages of an earlier key),
and a park D times too long. The pace is never taken below what this process alone completes,
and before any lease figure exists it is that local rate.

Pure bookkeeping on one event loop; the clock is injectable.
"""

from __future__ import annotations

import hashlib
import random
import time
from collections import deque
from collections.abc import Callable, Collection, Hashable, Iterable
from dataclasses import dataclass, field, replace

from services.dispatcher.model import Pending

DEFAULT_MAX_IN_FLIGHT = 10
MAX_PARK_S = 600.0
MIN_PARK_S = 0.5
RATE_WINDOW_S = 10.0
MAX_WAITING = 20000   # default: messages waiting in memory at which fetching stops


@dataclass
class Gate:
    """One endpoint's local state."""

    endpoint_id: str
    waiting: deque[Pending] = field(default_factory=deque)
    in_flight: int = 0
    claiming: int = 0
    not_before: float = 0.0
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT
    rate_limit_per_s: int | None = None
    done_at: deque[float] = field(default_factory=lambda: deque(maxlen=4096))
    since: float = 0.0              # when this gate was created (clock of its Gates)
    shard_key: int = 0              # stable hash of the endpoint id: which claim worker
    # (time, leases of the endpoint across all dispatchers) as claims counted them
    leases_seen: deque[tuple[float, int]] = field(default_factory=lambda: deque(maxlen=256))
    # (time, seconds a lease was held: claim to recorded outcome) of this process's attempts
    held: deque[tuple[float, float]] = field(default_factory=lambda: deque(maxlen=256))

    def cap(self, endpoint_concurrency: int) -> int:
        return max(1, min(self.max_in_flight, endpoint_concurrency))

    def completion_rate(self, now: float) -> float | None:
        """Attempts recorded per second over the last ``RATE_WINDOW_S`` (or since the gate
        exists, at least 1 s); None before the first one (no basis for an estimate)."""
        while self.done_at and self.done_at[0] < now - RATE_WINDOW_S:
            self.done_at.popleft()
        if not self.done_at:
            return None
        return len(self.done_at) / min(RATE_WINDOW_S, max(1.0, now - self.since))

    def endpoint_pace(self, now: float) -> float | None:
        """Completions per second of the endpoint across every dispatcher, by Little's law:
        the mean of the lease counts claims saw over the mean time a lease is held, both over
        the last ``RATE_WINDOW_S``. None without both figures."""
        for samples in (self.leases_seen, self.held):
            while samples and samples[0][0] < now - RATE_WINDOW_S:
                samples.popleft()
        if not self.leases_seen or not self.held:
            return None
        leases = sum(n for _, n in self.leases_seen) / len(self.leases_seen)
        held_s = sum(h for _, h in self.held) / len(self.held)
        return leases / held_s if held_s > 0 and leases > 0 else None

    def pace(self, now: float) -> float | None:
        """The endpoint's pace (module docstring): the larger of :meth:`endpoint_pace` and
        this process's own :meth:`completion_rate`; None before any attempt finished here."""
        local = self.completion_rate(now)
        if local is None:
            return None
        return max(local, self.endpoint_pace(now) or 0.0)

    def idle(self) -> bool:
        return not self.waiting and self.in_flight == 0 and self.claiming == 0


def claim_shard_key(endpoint_id: str) -> int:
    """Which claim worker serves ``endpoint_id`` (``key % workers``): a stable hash that is
    independent of the endpoint's Kafka partition, ``crc32(endpoint id) % partitions``. The
    ``deliveries`` key is the endpoint id (endpoint affinity), so the endpoints one member owns
    share crc32 residues: the group's round-robin assignor gives member k of D the partitions
    k, k+D, ..., and with crc32 here as well every endpoint of a member would fall to one claim
    worker whenever the worker count divides D (4 dispatchers, 4 workers: 1 busy in each)."""
    return int.from_bytes(hashlib.blake2b(endpoint_id.encode(), digest_size=4).digest(), "big")


class Gates:
    """All gates of the process; see the module docstring."""

    def __init__(self, concurrency: int, endpoint_concurrency: int, waiting_per_endpoint: int,
                 memory_wait_s: float = 10.0, clock: Callable[[], float] = time.monotonic,
                 rng: random.Random | None = None, max_waiting: int = MAX_WAITING) -> None:
        self.concurrency = concurrency
        self.max_waiting = max_waiting
        self.memory_wait_s = memory_wait_s
        self.endpoint_concurrency = endpoint_concurrency
        self.waiting_per_endpoint = waiting_per_endpoint
        self._clock = clock
        self._rng = rng or random.Random()
        self._gates: dict[str, Gate] = {}
        self._rotation = 0
        self.in_flight = 0
        self.claiming = 0
        self.waiting = 0

    def gate(self, endpoint_id: str) -> Gate:
        found = self._gates.get(endpoint_id)
        if found is None:
            found = self._gates[endpoint_id] = Gate(endpoint_id, since=self._clock(),
                                                    shard_key=claim_shard_key(endpoint_id))
        return found

    def add(self, pending: Pending) -> int:
        """Queue a consumed message behind its endpoint; returns the endpoint's shard key
        (which claim worker takes it: ``key % workers``)."""
        gate = self.gate(pending.message.endpoint_id)
        gate.waiting.append(replace(pending, queued_at=self._clock()))
        self.waiting += 1
        return gate.shard_key

    @property
    def full(self) -> bool:
        """Memory is contended: the consumer stops fetching."""
        return self.waiting >= self.max_waiting

    def waiting_limit(self, gate: Gate, now: float, busy_gates: int) -> int:
        """How many messages ``gate`` may hold now, ``busy_gates`` endpoints having waiting
        work (see the module docstring)."""
        rate = gate.pace(now)
        if rate is None:
            return len(gate.waiting)  # no attempt finished yet: no basis for parking
        fill = gate.cap(self.endpoint_concurrency)
        workable = max(fill, int(rate * self.memory_wait_s))
        if gate.waiting and now - gate.waiting[0].queued_at > self.memory_wait_s:
            return workable  # it fell behind: keep what it works off in time
        if not self.full or len(gate.waiting) <= workable or now - gate.since < RATE_WINDOW_S:
            # memory is free, or it works its queue off in time, or its rate is still ramping
            # up (a young estimate is too low: parking on it strands a fast backlog for minutes)
            return len(gate.waiting)
        share = self.max_waiting // max(2, busy_gates)
        return max(fill, self.waiting_per_endpoint, share)

    def _overflow(self, gate: Gate, now: float, busy_gates: int) -> list[Pending]:
        limit = self.waiting_limit(gate, now, busy_gates)
        out: list[Pending] = []
        rate = gate.pace(now) or float(gate.cap(self.endpoint_concurrency))
        while len(gate.waiting) > limit:
            position = len(gate.waiting) + gate.in_flight + gate.claiming
            delay = min(MAX_PARK_S, max(MIN_PARK_S, position / rate))
            out.append(replace(gate.waiting.pop(), park_s=delay * self._rng.uniform(0.9, 1.1)))
            self.waiting -= 1
        return out

    def take(self, limit: int, shards: Collection[int] = (0,), of: int = 1) -> list[Pending]:
        """Up to ``limit`` requests for the next claim (overflow parks come on top of it),
        from the endpoints of the claim shards ``shards`` (of ``of``: an endpoint's shard is
        ``shard_key % of``) only: concurrent claim workers take disjoint endpoints, so their
        transactions never wait for each other's locks.

        The budget is shared round-robin: every ready endpoint gets an equal share per pass.
        Requests without ``park_s`` count as claiming until settled, deferred or started.
        """
        now = self._clock()
        out: list[Pending] = []
        budget = min(limit, self.concurrency - self.in_flight - self.claiming)
        busy = sum(1 for g in self._gates.values() if g.waiting)
        gates = [g for g in self._gates.values()
                 if g.waiting and g.shard_key % of in shards]
        if gates:
            self._rotation = (self._rotation + 1) % len(gates)
            gates = gates[self._rotation:] + gates[:self._rotation]
        ready = [g for g in gates if g.not_before <= now]
        while budget > 0 and ready:
            share = max(1, budget // len(ready))
            still: list[Gate] = []
            for gate in ready:
                free = gate.cap(self.endpoint_concurrency) - gate.in_flight - gate.claiming
                for _ in range(max(0, min(free, share, budget, len(gate.waiting)))):
                    out.append(gate.waiting.popleft())
                    gate.claiming += 1
                    budget -= 1
                if gate.waiting and free > share:
                    still.append(gate)
            ready = still
        self.claiming += len(out)
        self.waiting -= len(out)
        for gate in gates:
            out.extend(self._overflow(gate, now, busy))
        return out

    def next_ready_in(self) -> float | None:
        """Seconds until a deferred gate with waiting work may be asked again (None: none)."""
        now = self._clock()
        times = [g.not_before - now for g in self._gates.values()
                 if g.waiting and g.not_before > now]
        return max(0.0, min(times)) if times else None

    def _release_claiming(self, pending: Pending) -> Gate:
        gate = self.gate(pending.message.endpoint_id)
        if pending.park_s is None:
            gate.claiming -= 1
            self.claiming -= 1
        return gate

    def settled(self, pending: Pending) -> None:
        """The claim settled the request without an attempt (skip, park, cancel, dead)."""
        self._forget_if_idle(self._release_claiming(pending))

    def defer(self, pending: Pending, delay_s: float) -> None:
        """Put the request back in front of its queue; ask again after ``delay_s``."""
        gate = self._release_claiming(pending)
        gate.waiting.appendleft(replace(pending, park_s=None))
        self.waiting += 1
        gate.not_before = max(gate.not_before, self._clock() + delay_s)

    def started(self, pending: Pending) -> None:
        """The request was claimed: it is now an attempt in flight."""
        gate = self._release_claiming(pending)
        gate.in_flight += 1
        self.in_flight += 1

    def finished(self, endpoint_id: str, held_s: float | None = None) -> None:
        """An attempt's outcome is recorded; its slot is free again. ``held_s``: how long
        its lease was held (claim to recorded outcome), for the endpoint's pace."""
        gate = self.gate(endpoint_id)
        gate.in_flight -= 1
        self.in_flight -= 1
        now = self._clock()
        gate.done_at.append(now)
        if held_s is not None:
            gate.held.append((now, held_s))
        gate.not_before = 0.0
        self._forget_if_idle(gate)

    def awaits_slot(self, endpoint_id: str) -> bool:
        """Whether a request waits for an in-flight slot that an attempt of ``endpoint_id``
        frees once its outcome is recorded: the endpoint has requests waiting, or the
        process is at its concurrency limit."""
        gate = self._gates.get(endpoint_id)
        return (gate is not None and bool(gate.waiting)) or (
            self.waiting > 0 and self.in_flight + self.claiming >= self.concurrency)

    def returned(self, pending: Pending, requeue: bool) -> None:
        """An attempt in flight ended without being sent (it gave its rate slot up): its slot
        is free again, no completion is counted, and with ``requeue`` the request goes back
        to the front of its queue, to be claimed again now."""
        gate = self.gate(pending.message.endpoint_id)
        gate.in_flight -= 1
        self.in_flight -= 1
        if requeue:
            gate.waiting.appendleft(replace(pending, park_s=None, outbox_id=None))
            self.waiting += 1
        self._forget_if_idle(gate)

    def learn(self, endpoint_id: str, max_in_flight: int, rate_limit_per_s: int | None,
              leases: int | None = None) -> None:
        """Update an endpoint's limits from a fresh read of its configuration; ``leases``:
        the endpoint's unexpired leases across all dispatchers right after that claim (for
        the endpoint's pace)."""
        gate = self._gates.get(endpoint_id)
        if gate is not None:
            gate.max_in_flight = max(1, max_in_flight)
            gate.rate_limit_per_s = rate_limit_per_s
            if leases is not None:
                gate.leases_seen.append((self._clock(), leases))

    def drop(self, partitions: Iterable[Hashable] | None = None) -> list[Pending]:
        """Remove waiting requests of ``partitions`` (all when None); returns them."""
        wanted = None if partitions is None else set(partitions)
        dropped: list[Pending] = []
        for gate in list(self._gates.values()):
            keep: deque[Pending] = deque()
            for p in gate.waiting:
                (dropped if wanted is None or p.ticket.partition in wanted else keep).append(p)
            gate.waiting = keep
            self._forget_if_idle(gate)
        self.waiting -= len(dropped)
        return dropped

    def in_flight_by_endpoint(self) -> dict[str, int]:
        return {e: g.in_flight for e, g in self._gates.items() if g.in_flight}

    def _forget_if_idle(self, gate: Gate) -> None:
        if gate.idle() and gate.not_before <= self._clock():
            self._gates.pop(gate.endpoint_id, None)
