"""A count of events over whole seconds: how busy something is right now, cheaply.

:class:`PerSecondCount` keeps two counters, the current second of a monotonic clock and the
one before it, and reports the larger: a burst is seen at once, and one quiet second is
enough to report quiet again. Pure (the caller passes the clock); not thread-safe.
"""

from __future__ import annotations


class PerSecondCount:
    """Events per second as ``max(this second, the second before)``; see the module."""

    def __init__(self) -> None:
        self._second = float("-inf")
        self._this_second = 0
        self._last_second = 0

    def _roll(self, now: float) -> None:
        second = float(int(now))
        if second != self._second:
            self._last_second = self._this_second if second - self._second == 1 else 0
            self._second, self._this_second = second, 0

    def add(self, now: float, count: int = 1) -> int:
        """Count ``count`` events at ``now`` (monotonic seconds); returns :meth:`recent`."""
        self._roll(now)
        self._this_second += count
        return max(self._this_second, self._last_second)

    def recent(self, now: float) -> int:
        """The larger of the counts of the current second and the one before."""
        self._roll(now)
        return max(self._this_second, self._last_second)

    def another_within(self, now: float, wait_s: float) -> bool:
        """Whether at this rate at least one more event is expected within ``wait_s`` (never
        for a wait of 0): what makes waiting for company worth its delay."""
        return wait_s > 0 and self.recent(now) * wait_s >= 1.0
