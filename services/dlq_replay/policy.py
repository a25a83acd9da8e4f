"""Replay policy, pure: what a replay does to one delivery, and how fast a bulk replay may go.

Nothing here does I/O; time is passed in. The shell (``requeue``, ``worker``) carries the
decisions out inside Postgres transactions.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Literal

from shared.core.delivery_status import OPEN_STATUSES

Outcome = Literal["queued", "already_pending", "endpoint_deleted", "endpoint_disabled", "not_dead"]
OUTCOMES: tuple[Outcome, ...] = (
    "queued", "already_pending", "endpoint_deleted", "endpoint_disabled", "not_dead")

MAX_BATCH = 500          # deliveries queued by one bulk step (one transaction)
STEPS_PER_SECOND = 10    # a bulk job aims for this many steps per second at full rate


@dataclass(frozen=True)
class DeliveryState:
    """What a replay needs to know about one delivery, read under its row lock."""

    delivery_id: str
    endpoint_id: str
    status: str
    endpoint_enabled: bool
    endpoint_deleted: bool


def replayable_statuses(include_succeeded: bool) -> list[str]:
    """The delivery statuses a replay may move back to ``pending``."""
    return ["dead", "succeeded"] if include_succeeded else ["dead"]


def classify(state: DeliveryState, include_succeeded: bool) -> Outcome:
    """The outcome a replay reports for ``state``; only ``queued`` changes anything.

    A delivery still moving (pending or retrying) is ``already_pending`` whatever its endpoint;
    otherwise a deleted endpoint wins over a disabled one, and a delivery is queued only from a
    replayable status (``dead``; also ``succeeded`` with ``include_succeeded``). ``cancelled``
    deliveries of a live endpoint are reported ``not_dead``.
    """
    if state.status in OPEN_STATUSES:
        return "already_pending"
    if state.endpoint_deleted:
        return "endpoint_deleted"
    if not state.endpoint_enabled:
        return "endpoint_disabled"
    if state.status in replayable_statuses(include_succeeded):
        return "queued"
    return "not_dead"


def batch_size(max_per_second: int) -> int:
    """Deliveries per bulk step for a rate: about a tenth of a second's worth, 1..MAX_BATCH."""
    if max_per_second < 1:
        raise ValueError("max_per_second must be >= 1")
    return max(1, min(MAX_BATCH, math.ceil(max_per_second / STEPS_PER_SECOND)))


class SlidingWindowPacer:
    """Keeps a sender at no more than ``rate`` items in any window of ``window_s`` seconds.

    Two rules together: batches are spaced evenly (after ``n`` items the next batch waits
    ``n / rate`` seconds, so the flow is smooth rather than a burst at each second), and a strict
    sliding log refuses any batch that would put more than ``rate`` items into one window (no
    burst allowance at all, on the caller's clock). Not thread-safe; one pacer per sender.
    """

    def __init__(self, rate: int, window_s: float = 1.0, margin_s: float = 0.002) -> None:
        if rate < 1:
            raise ValueError("rate must be >= 1")
        self.rate = rate
        self.window_s = window_s
        self._margin_s = margin_s
        self._log: deque[tuple[float, int]] = deque()
        self._in_window = 0
        self._next_free = float("-inf")

    def _prune(self, now: float) -> None:
        while self._log and self._log[0][0] + self.window_s + self._margin_s <= now:
            self._in_window -= self._log.popleft()[1]

    def _window_wait(self, n: int, now: float) -> float:
        excess = self._in_window + n - self.rate
        if excess <= 0:
            return 0.0
        for sent_at, count in self._log:
            excess -= count
            if excess <= 0:
                return max(0.0, sent_at + self.window_s + self._margin_s - now)
        return 0.0  # unreachable: the log holds more than the excess

    def wait_s(self, n: int, now: float) -> float:
        """Seconds to wait before ``n`` more items may go (0 when they may go now).

        Raises ValueError when ``n`` exceeds ``rate`` (it could never go).
        """
        if n > self.rate:
            raise ValueError(f"a batch of {n} can never fit a rate of {self.rate}")
        self._prune(now)
        return max(0.0, self._next_free - now, self._window_wait(n, now))

    def record(self, n: int, now: float, started: float | None = None) -> None:
        """Note that ``n`` items went by ``now`` (call after they went), in a batch begun at
        ``started`` (default ``now``): the even spacing counts from the start, so the time a
        batch takes does not slow the flow, while the window counts them at ``now``."""
        if n > 0:
            self._log.append((now, n))
            self._in_window += n
            self._next_free = (now if started is None else started) + n / self.rate
