"""Throttling failed console sign-ins per client address (pure: time is passed in)."""

from __future__ import annotations

from collections import deque

MAX_FAILURES = 10
WINDOW_S = 60.0
_MAX_TRACKED = 10_000


class LoginThrottle:
    """Counts failed sign-ins per client; pure (time is passed in), one per process."""

    def __init__(self, max_failures: int = MAX_FAILURES, window_s: float = WINDOW_S) -> None:
        self._max = max_failures
        self._window_s = window_s
        self._failures: dict[str, deque[float]] = {}

    def _recent(self, client: str, now: float) -> deque[float]:
        times = self._failures.get(client, deque())
        while times and times[0] <= now - self._window_s:
            times.popleft()
        return times

    def retry_after_s(self, client: str, now: float) -> float:
        """0 when ``client`` may try now, else seconds until it may."""
        times = self._recent(client, now)
        if len(times) < self._max:
            return 0.0
        return times[0] + self._window_s - now

    def failed(self, client: str, now: float) -> None:
        if len(self._failures) >= _MAX_TRACKED:  # bounded memory: forget the stalest clients
            for key in [k for k, v in self._failures.items() if not self._recent(k, now)]:
                del self._failures[key]
            if len(self._failures) >= _MAX_TRACKED:
                self._failures.pop(next(iter(self._failures)))
        times = self._recent(client, now)
        times.append(now)
        self._failures[client] = times

    def succeeded(self, client: str) -> None:
        self._failures.pop(client, None)
