"""Per-endpoint backoff: a circuit breaker, the auto-disable rule, and a strict rate spacer.

Circuit: ``failure_threshold`` consecutive failures open the circuit for a cool-off of
``base_cooloff_s``; when it ends the circuit is half-open and one probe may go; a failed probe
reopens it for twice as long (5 s, 10 s, 20 s, ... capped at ``max_cooloff_s``), a success
closes it. Failures reported while the circuit is open (requests already in flight when it
opened) are not new evidence and change nothing, so concurrency cannot inflate the cool-off.

Rate: :func:`reserve_send_time` spaces sends at least ``1/rate`` seconds apart, so no
one-second window ever holds more than ``rate`` sends, and idle time earns no burst.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import Enum

# Added to every spacing interval so float rounding (about 1e-7 s at Unix-epoch magnitudes)
# can never bring two sends closer than 1/rate.
RATE_SPACING_MARGIN_S = 1e-6
_MAX_DOUBLINGS = 32


class CircuitState(Enum):
    """CLOSED: send freely. OPEN: send nothing until the cool-off ends. HALF_OPEN: one probe."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True)
class BackoffPolicy:
    """When the circuit opens, how long it stays open, and when an endpoint is disabled."""

    failure_threshold: int = 5
    base_cooloff_s: float = 5.0
    max_cooloff_s: float = 300.0
    auto_disable_after_s: float = 5 * 24 * 3600.0

    def __post_init__(self) -> None:
        if self.failure_threshold < 1:
            raise ValueError("failure_threshold must be >= 1")
        for name in ("base_cooloff_s", "max_cooloff_s", "auto_disable_after_s"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0")
        if self.max_cooloff_s < self.base_cooloff_s:
            raise ValueError("max_cooloff_s must be >= base_cooloff_s")

    def cooloff_s(self, consecutive_failures: int) -> float:
        """Cool-off after that many consecutive failures (0 below the threshold)."""
        if consecutive_failures < self.failure_threshold:
            return 0.0
        doublings = min(consecutive_failures - self.failure_threshold, _MAX_DOUBLINGS)
        return min(self.base_cooloff_s * 2.0**doublings, self.max_cooloff_s)


@dataclass(frozen=True)
class EndpointHealth:
    """Shared health of one endpoint; the all-default value is a healthy endpoint.

    ``failing_since`` is when the current run of failures began (None while healthy).
    """

    consecutive_failures: int = 0
    circuit_open_until: datetime | None = None
    failing_since: datetime | None = None


def circuit_state(health: EndpointHealth, now: datetime) -> CircuitState:
    """The circuit's state at ``now``: OPEN before ``circuit_open_until``, HALF_OPEN after it,
    CLOSED when no circuit was opened (or it was closed by a success)."""
    if health.circuit_open_until is None or health.consecutive_failures == 0:
        return CircuitState.CLOSED
    if now < health.circuit_open_until:
        return CircuitState.OPEN
    return CircuitState.HALF_OPEN


def blocked_until(health: EndpointHealth, now: datetime) -> datetime | None:
    """When an open circuit lets the next probe through, or None if sending is allowed now.

    A delivery refused by an open circuit is rescheduled for this time and is not an attempt.
    """
    if circuit_state(health, now) is CircuitState.OPEN:
        return health.circuit_open_until
    return None


def on_failure(health: EndpointHealth, now: datetime, policy: BackoffPolicy) -> EndpointHealth:
    """Health after a failed attempt that finished at ``now``.

    While the circuit is open the failure changes nothing. Otherwise it counts, and from the
    threshold on it (re)opens the circuit for :meth:`BackoffPolicy.cooloff_s`.
    """
    if circuit_state(health, now) is CircuitState.OPEN:
        return health
    failures = health.consecutive_failures + 1
    cooloff = policy.cooloff_s(failures)
    return EndpointHealth(
        consecutive_failures=failures,
        circuit_open_until=now + timedelta(seconds=cooloff) if cooloff > 0 else None,
        failing_since=health.failing_since or now,
    )


def on_success(health: EndpointHealth) -> EndpointHealth:
    """Health after a successful attempt: closed and healthy, whatever came before."""
    return replace(health, consecutive_failures=0, circuit_open_until=None, failing_since=None)


def should_auto_disable(health: EndpointHealth, now: datetime, policy: BackoffPolicy) -> bool:
    """True when the endpoint has failed without a single success for the whole window
    (``auto_disable_after_s`` since ``failing_since``) and its circuit has tripped."""
    if health.failing_since is None or health.consecutive_failures < policy.failure_threshold:
        return False
    return now - health.failing_since >= timedelta(seconds=policy.auto_disable_after_s)


def reserve_send_time(next_free_at: float, now: float, rate_per_s: int) -> tuple[float, float]:
    """Reserve the next send slot of an endpoint limited to ``rate_per_s``.

    Returns ``(send_at, new_next_free_at)``: send no earlier than ``send_at`` (>= ``now``) and
    store ``new_next_free_at`` for the next reservation. Consecutive slots are more than
    ``1/rate_per_s`` apart. Raises ValueError unless ``rate_per_s >= 1``.
    """
    if isinstance(rate_per_s, bool) or not isinstance(rate_per_s, int) or rate_per_s < 1:
        raise ValueError(f"rate_per_s must be a positive integer, got {rate_per_s!r}")
    send_at = max(now, next_free_at)
    return send_at, send_at + 1.0 / rate_per_s + RATE_SPACING_MARGIN_S


class RateSlots:
    """Mutable holder of one endpoint's next free slot (times on one monotonic clock).

    Not thread-safe; one event loop owns it. Callers sleep until the returned time.
    """

    def __init__(self, rate_per_s: int, next_free_at: float = -math.inf) -> None:
        reserve_send_time(0.0, 0.0, rate_per_s)  # validates the rate
        self.rate_per_s = rate_per_s
        self.next_free_at = next_free_at

    def reserve(self, now: float) -> float:
        """The time at which this send may start; later callers get later slots."""
        send_at, self.next_free_at = reserve_send_time(self.next_free_at, now, self.rate_per_s)
        return send_at

    def set_rate(self, rate_per_s: int) -> None:
        """Change the rate; slots already handed out stay as they are."""
        reserve_send_time(0.0, 0.0, rate_per_s)
        self.rate_per_s = rate_per_s
