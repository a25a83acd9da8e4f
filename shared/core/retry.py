"""The retry schedule as data, and the delay before the next attempt.

Contract (docs/api.md): the schedule has one entry per attempt, ``len(schedule)`` attempts in all.
``schedule[0]`` is the delay before the first attempt (0 = at once); after attempt ``n``
(1-based) fails, the next attempt waits ``schedule[n]`` with +-20% jitter, so attempt ``n + 1``
is never earlier than ``0.8 * schedule[n]``. After attempt ``len(schedule)`` the schedule is
exhausted. Floors (timeouts, 429) and a ``Retry-After`` only ever lengthen a delay, and never
beyond the schedule's longest step.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from enum import Enum

JITTER_LOW = 0.8
JITTER_HIGH = 1.2

_NUMBER_RE = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")
_SCHEDULE_ENTRY_RE = re.compile(r"[0-9]{1,12}(?:\.[0-9]{1,9})?")


class FailureKind(Enum):
    """Why an attempt did not succeed; the value is the stable name stored and reported."""

    TIMEOUT = "timeout"
    CONNECTION = "connection"
    DNS = "dns"
    TLS = "tls"
    SSRF_BLOCKED = "ssrf_blocked"
    TOO_LARGE = "too_large"
    REDIRECT = "redirect"
    RETRYABLE_STATUS = "retryable_status"
    RATE_LIMITED = "rate_limited"
    NON_RETRYABLE_STATUS = "non_retryable_status"
    GONE = "gone"

    @property
    def retryable(self) -> bool:
        """True when the delivery should be tried again while the schedule lasts. A target
        the SSRF guard refused is not: the guard would refuse it again on every attempt."""
        return self not in (FailureKind.NON_RETRYABLE_STATUS, FailureKind.GONE,
                            FailureKind.SSRF_BLOCKED)


@dataclass(frozen=True)
class RetryFloors:
    """Shortest delay after a timeout or a 429, each capped at the schedule's longest step."""

    timeout_s: float = 5.0
    rate_limited_s: float = 10.0

    def __post_init__(self) -> None:
        for name in ("timeout_s", "rate_limited_s"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")


def parse_schedule(text: str) -> tuple[float, ...]:
    """Parse ``"0,5,300"`` into seconds; raises ValueError naming the first bad entry.

    Each entry is a plain non-negative decimal (``5``, ``0.5``); at least one entry is
    required; blanks around entries are ignored.
    """
    if not isinstance(text, str) or not text.strip():
        raise ValueError("retry schedule must have at least one entry")
    delays: list[float] = []
    for index, part in enumerate(text.split(",")):
        item = part.strip()
        where = f"retry schedule entry {index + 1} ({item!r})"
        if not _SCHEDULE_ENTRY_RE.fullmatch(item):
            raise ValueError(f"{where} must be a non-negative number of seconds")
        delays.append(float(item))
    return tuple(delays)


def _floor_for(kind: FailureKind, floors: RetryFloors) -> float:
    if kind is FailureKind.TIMEOUT:
        return floors.timeout_s
    if kind is FailureKind.RATE_LIMITED:
        return floors.rate_limited_s
    return 0.0


def next_delay(
    attempts_made: int,
    kind: FailureKind,
    schedule: Sequence[float],
    rng: random.Random,
    retry_after_s: float | None = None,
    floors: RetryFloors | None = None,
) -> float | None:
    """Seconds to wait before the next attempt, or None when no attempt is left.

    ``attempts_made`` counts the attempts made so far (>= 1), the last of which failed with
    ``kind``. The result is ``schedule[attempts_made]`` times a uniform factor in [0.8, 1.2],
    raised to the kind's floor (capped at ``max(schedule)``) and to ``retry_after_s`` (capped
    at the last step of the schedule, as the contract says).
    The caller passes ``retry_after_s`` only for a 429 or 503 response. Non-retryable kinds
    return None. Raises ValueError on an empty schedule or ``attempts_made < 1``.
    """
    if not schedule:
        raise ValueError("retry schedule must have at least one entry")
    if attempts_made < 1:
        raise ValueError(f"attempts_made must be >= 1, got {attempts_made}")
    if not kind.retryable or attempts_made >= len(schedule):
        return None
    delay = schedule[attempts_made] * rng.uniform(JITTER_LOW, JITTER_HIGH)
    delay = max(delay, min(_floor_for(kind, floors or RetryFloors()), max(schedule)))
    if retry_after_s is not None and math.isfinite(retry_after_s):
        delay = max(delay, min(max(retry_after_s, 0.0), schedule[-1]))
    return delay


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds a ``Retry-After`` header asks for, or None when absent or unreadable.

    Accepts delta-seconds (decimals tolerated) and an HTTP-date relative to the aware ``now``;
    a negative delta or a date in the past gives 0.
    """
    if value is None:
        return None
    text = value.strip()
    if not text or len(text) > 64:
        return None
    if _NUMBER_RE.fullmatch(text):
        seconds = float(text)
        return max(seconds, 0.0) if math.isfinite(seconds) else None
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((when - now).total_seconds(), 0.0)
