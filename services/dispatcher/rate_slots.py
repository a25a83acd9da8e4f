"""Rate-limit send slots: how far apart the claim reserves them, and whether a send that is
about to leave may still use its slot (pure; no I/O, no clock of its own).

The claim (:mod:`claim_plan`) reserves the slots of an endpoint limited to ``r`` sends a
second one after another, across every dispatcher (the endpoint's ``endpoint_health`` row is
locked): slot ``k+1`` is at least :func:`slot_spacing_us` after slot ``k``, that is
``d(r) = ceil(RATE_SAFETY * 1e6 / r)`` microseconds, so ``r * d(r) >= RATE_SAFETY`` seconds
(exact integer arithmetic, and Postgres keeps the microseconds). A send never leaves before
its slot (:func:`send_verdict` waits) and never more than :data:`LATE_SEND_TOLERANCE_S` after
it (it gives the slot up instead).

**Theorem.** For every rate ``r >= 1``: no window of one second, open or closed, holds more
than ``r`` sends of the endpoint. Proof: take any ``r + 1`` sends; ordered by slot they are
``s_0 < ... < s_r`` with actual send times ``t_i`` in ``[s_i, s_i + L]``. Then the first and
the last lie ``t_r - t_0 >= s_r - (s_0 + L) >= r * d(r) - L >= RATE_SAFETY - L`` apart, and
``RATE_SAFETY - L = 1 + CLOCK_MARGIN_S > 1``: they never fit in one second. The bound is
tight: a tolerance of ``RATE_SAFETY - 1`` (50 ms) or more admits ``r + 1`` sends in a closed
window (``tests/unit/test_dispatcher_rate_slots.py`` shows both sides). Over any span the
rate is at most ``r / RATE_SAFETY`` (about 95 % of the limit) on average.

Clocks: slots are times of the database clock. A dispatcher reads it once per claim (the
read's ``statement_timestamp()``) and maps slots onto its monotonic clock; it cannot know
where inside that read's round trip the database took the time, so it waits for the slot as
if the time had been taken at the round trip's end (never early) and measures lateness as if
at its start (never underestimated): the round trip comes out of the tolerance
(:func:`send_window`). ``CLOCK_MARGIN_S`` covers the rates at which the monotonic, the wall
and the database clocks may tick apart over the at most ``POSTWIRE_RATE_HORIZON_S`` + L a
slot spans (NTP slews at most 500 ppm: 0.5 ms per second) and makes the inequality strict.
A send's time is when its attempt starts (``attempts.started_at``): the verdict brackets
that time stamp between two monotonic readings and nothing awaits between it and the send.
"""

from __future__ import annotations

from dataclasses import dataclass

RATE_SAFETY = 1.05              # r consecutive slots span at least this many seconds
SAFE_SPAN_US = 1_050_000        # RATE_SAFETY in microseconds (integer arithmetic)
CLOCK_MARGIN_S = 0.001
LATE_SEND_TOLERANCE_S = RATE_SAFETY - 1.0 - CLOCK_MARGIN_S   # L = 49 ms


def slot_spacing_us(rate_per_s: int) -> int:
    """Microseconds between consecutive slots of an endpoint limited to ``rate_per_s``:
    ``ceil(SAFE_SPAN_US / rate)``, so ``rate`` spacings add up to at least ``RATE_SAFETY`` s.
    Raises ValueError unless ``rate_per_s >= 1``."""
    if isinstance(rate_per_s, bool) or not isinstance(rate_per_s, int) or rate_per_s < 1:
        raise ValueError(f"rate_per_s must be a positive integer, got {rate_per_s!r}")
    return -(-SAFE_SPAN_US // rate_per_s)


@dataclass(frozen=True, slots=True)
class SendWindow:
    """When a claimed attempt may start, on the dispatcher's monotonic clock.

    ``not_before``: the slot, as late as it can be (never send earlier). ``not_after``: the
    slot as early as it can be, plus :data:`LATE_SEND_TOLERANCE_S`; None when the endpoint
    has no rate limit (any lateness is harmless then).
    """

    not_before: float
    not_after: float | None


def send_window(read_started: float, read_ended: float, ahead_s: float,
                rate_limited: bool) -> SendWindow:
    """The window of a slot ``ahead_s`` seconds after the database time a claim read between
    ``read_started`` and ``read_ended`` (monotonic). When the read took longer than the
    tolerance the window is empty (``not_after < not_before``): the slot is given up at once."""
    ahead = max(0.0, ahead_s)
    not_after = read_started + ahead + LATE_SEND_TOLERANCE_S if rate_limited else None
    return SendWindow(not_before=read_ended + ahead, not_after=not_after)


@dataclass(frozen=True, slots=True)
class SendNow:
    """Start the attempt now."""


@dataclass(frozen=True, slots=True)
class WaitFor:
    """Too early: sleep this long, then ask again."""

    seconds: float


@dataclass(frozen=True, slots=True)
class GiveUp:
    """The send would leave more than the tolerance after its slot (``late_s`` past the
    window's end, at the earliest moment it could leave): do not send; end the lease so the
    delivery is claimed again with a new slot."""

    late_s: float


SendVerdict = SendNow | WaitFor | GiveUp


def send_verdict(window: SendWindow, before: float, after: float | None = None
                 ) -> SendVerdict:
    """What an attempt task does with its slot's ``window``, given two readings of the
    monotonic clock taken just before and just after it read the attempt's recorded start
    time (``after`` defaults to ``before``): the record then lies between them, so it is no
    earlier than the slot when ``before`` is not, and no later than the tolerance allows when
    ``after`` is not.

    Gives up as soon as the window's end is known to be missed (also while still too early,
    when the window is empty), otherwise waits for its start, otherwise sends.
    """
    latest = before if after is None else max(before, after)
    earliest_send = max(latest, window.not_before)
    if window.not_after is not None and earliest_send > window.not_after:
        return GiveUp(earliest_send - window.not_after)
    if before < window.not_before:
        return WaitFor(window.not_before - before)
    return SendNow()
