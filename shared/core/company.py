"""Whether a submission that could wait for company should: will any come?

A group commit that waits for company trades each caller's latency for fewer transactions.
That pays only when another submission is likely to arrive within the wait.
:class:`CompanyForecast` says so when submissions arrive at least once per wait (counted over
whole seconds, :class:`~shared.core.per_second.PerSecondCount`) and not all of them from one
source: a caller that sends one request at a time and waits for each answer never brings its
own company, however fast it goes, and would only be slowed down. Pure (the caller passes the
clock and names the source, e.g. its connection); not thread-safe.
"""

from __future__ import annotations

from collections.abc import Hashable

from shared.core.per_second import PerSecondCount

OTHER_SOURCE_WITHIN_S = 1.0   # a second source counts as present this long after it was seen


class CompanyForecast:
    """See the module. ``wait_s``: how long a submission would wait for company."""

    def __init__(self, wait_s: float) -> None:
        self._wait_s = wait_s
        self._arrivals = PerSecondCount()
        self._last_source: Hashable | None = None
        self._other_source_at = float("-inf")

    def arrive(self, now: float, source: Hashable) -> bool:
        """Count a submission from ``source`` at ``now`` (monotonic seconds); True when it
        should wait for company."""
        self._arrivals.add(now)
        if source != self._last_source:
            if self._last_source is not None:
                self._other_source_at = now
            self._last_source = source
        return (self._arrivals.another_within(now, self._wait_s)
                and now - self._other_source_at <= OTHER_SOURCE_WITHIN_S)
