"""The retry schedule, jitter, floors and Retry-After (shared.core.retry)."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta, timezone

import pytest

from shared.core.retry import (
    FailureKind,
    RetryFloors,
    next_delay,
    parse_retry_after,
    parse_schedule,
)

pytestmark = pytest.mark.unit

DEFAULT = (0.0, 5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)
NO_FLOORS = RetryFloors(timeout_s=0, rate_limited_s=0)
RETRYABLE = [k for k in FailureKind if k.retryable]
NOW = datetime(2026, 11, 22, 10, 0, 0, tzinfo=UTC)


# --- parse_schedule ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0,5,300,1800,7200,18000,36000,36000", DEFAULT),
        ("0", (0.0,)),
        ("7", (7.0,)),
        (" 0 , 1.5 ,\t2 ", (0.0, 1.5, 2.0)),
        ("0.25,0.5", (0.25, 0.5)),
        ("10,5,1", (10.0, 5.0, 1.0)),
    ],
)
def test_parse_schedule_accepts(text: str, expected: tuple[float, ...]) -> None:
    assert parse_schedule(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "at least one entry"),
        ("   ", "at least one entry"),
        ("1,,2", "entry 2"),
        ("5,", "entry 2"),
        (",5", "entry 1"),
        ("0,-1", "entry 2"),
        ("abc", "entry 1"),
        ("nan", "entry 1"),
        ("inf", "entry 1"),
        ("1e3", "entry 1"),
        ("1_000", "entry 1"),
        ("0x10", "entry 1"),
        ("+5", "entry 1"),
        ("5.", "entry 1"),
        ("1;2", "entry 1"),
        ("\u0665", "entry 1"),  # an Arabic-Indic digit float() would accept
    ],
)
def test_parse_schedule_rejects(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_schedule(text)


# --- FailureKind / RetryFloors ----------------------------------------------------------------


@pytest.mark.parametrize("kind", list(FailureKind))
def test_failure_kind_retryable(kind: FailureKind) -> None:
    expected = kind not in (FailureKind.NON_RETRYABLE_STATUS, FailureKind.GONE,
                            FailureKind.SSRF_BLOCKED)
    assert kind.retryable is expected


def test_failure_kind_values_are_stable_names() -> None:
    assert {k.value for k in FailureKind} == {
        "timeout", "connection", "dns", "tls", "ssrf_blocked", "too_large", "redirect",
        "retryable_status", "rate_limited", "non_retryable_status", "gone",
    }


@pytest.mark.parametrize("bad", [-1.0, math.nan, math.inf])
def test_retry_floors_reject_bad_values(bad: float) -> None:
    with pytest.raises(ValueError):
        RetryFloors(timeout_s=bad)
    with pytest.raises(ValueError):
        RetryFloors(rate_limited_s=bad)


def test_retry_floors_defaults() -> None:
    assert RetryFloors() == RetryFloors(timeout_s=5.0, rate_limited_s=10.0)


# --- next_delay: indexing and exhaustion ------------------------------------------------------


@pytest.mark.parametrize("attempts_made", [1, 2, 3])
def test_next_delay_uses_schedule_entry_after_attempt(attempts_made: int) -> None:
    schedule = (0.0, 10.0, 100.0, 1000.0)
    base = schedule[attempts_made]
    rng = random.Random(attempts_made)
    for _ in range(200):
        delay = next_delay(attempts_made, FailureKind.CONNECTION, schedule, rng, None, NO_FLOORS)
        assert delay is not None
        assert 0.8 * base <= delay <= 1.2 * base


@pytest.mark.parametrize("attempts_made", [8, 9, 100])
def test_next_delay_exhausted(attempts_made: int) -> None:
    rng = random.Random(0)
    assert next_delay(attempts_made, FailureKind.TIMEOUT, DEFAULT, rng) is None


def test_single_entry_schedule_allows_exactly_one_attempt() -> None:
    assert next_delay(1, FailureKind.RETRYABLE_STATUS, (0.0,), random.Random(0)) is None


@pytest.mark.parametrize("schedule", [DEFAULT, (0.0,), (1.0, 2.0), (0.0, 0.0, 0.0, 0.0, 0.0)])
def test_schedule_length_is_total_attempts(schedule: tuple[float, ...]) -> None:
    rng = random.Random(42)
    attempts = 1  # the first attempt, schedule[0] after acceptance
    while next_delay(attempts, FailureKind.RETRYABLE_STATUS, schedule, rng) is not None:
        attempts += 1
    assert attempts == len(schedule)


@pytest.mark.parametrize("kind", [FailureKind.NON_RETRYABLE_STATUS, FailureKind.GONE])
def test_next_delay_none_for_non_retryable(kind: FailureKind) -> None:
    assert next_delay(1, kind, DEFAULT, random.Random(0)) is None


def test_next_delay_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="attempts_made"):
        next_delay(0, FailureKind.TIMEOUT, DEFAULT, random.Random(0))
    with pytest.raises(ValueError, match="at least one entry"):
        next_delay(1, FailureKind.TIMEOUT, (), random.Random(0))


# --- next_delay: jitter ----------------------------------------------------------------------


def test_jitter_bounds_and_spread_over_many_draws() -> None:
    rng = random.Random(1234)
    draws = [next_delay(2, FailureKind.CONNECTION, DEFAULT, rng, None, NO_FLOORS)
             for _ in range(5000)]
    values = [d for d in draws if d is not None]
    assert len(values) == 5000
    assert min(values) >= 240.0 and max(values) <= 360.0
    assert min(values) < 245.0 and max(values) > 355.0  # the whole +-20% band is used
    assert abs(sum(values) / len(values) - 300.0) < 3.0  # centred on the step
    assert len(set(values)) > 4900  # really random, not a constant


def test_jitter_is_deterministic_for_a_seed() -> None:
    first = [next_delay(3, FailureKind.DNS, DEFAULT, random.Random(7)) for _ in range(3)]
    second = [next_delay(3, FailureKind.DNS, DEFAULT, random.Random(7)) for _ in range(3)]
    assert first == second


def test_zero_step_stays_zero_for_plain_failures() -> None:
    schedule = (0.0, 0.0, 0.0)
    assert next_delay(1, FailureKind.CONNECTION, schedule, random.Random(0)) == 0.0


def test_contract_lower_bound_holds_for_every_kind_and_step() -> None:
    """Attempt k+1 is never earlier than 0.8 x schedule[k] after attempt k failed."""
    rng = random.Random(99)
    for kind in RETRYABLE:
        for attempts_made in range(1, len(DEFAULT)):
            for _ in range(200):
                retry_after = rng.choice([None, 0.0, 3.0, 1e9, -5.0])
                delay = next_delay(attempts_made, kind, DEFAULT, rng, retry_after)
                assert delay is not None
                assert delay >= 0.8 * DEFAULT[attempts_made]


# --- next_delay: floors -----------------------------------------------------------------------


def test_timeout_floor_applies() -> None:
    schedule = (0.0, 1.0, 100.0)
    rng = random.Random(5)
    for _ in range(100):
        assert next_delay(1, FailureKind.TIMEOUT, schedule, rng) == 5.0


def test_rate_limited_floor_applies() -> None:
    schedule = (0.0, 1.0, 100.0)
    rng = random.Random(5)
    for _ in range(100):
        assert next_delay(1, FailureKind.RATE_LIMITED, schedule, rng) == 10.0


@pytest.mark.parametrize("kind", [FailureKind.CONNECTION, FailureKind.RETRYABLE_STATUS,
                                  FailureKind.REDIRECT, FailureKind.DNS])
def test_other_kinds_have_no_floor(kind: FailureKind) -> None:
    rng = random.Random(5)
    for _ in range(100):
        delay = next_delay(1, kind, (0.0, 1.0, 100.0), rng)
        assert delay is not None and delay <= 1.2


def test_floors_are_capped_at_longest_step() -> None:
    schedule = (0.0, 1.0, 2.0)
    assert next_delay(1, FailureKind.TIMEOUT, schedule, random.Random(0)) == 2.0
    assert next_delay(1, FailureKind.RATE_LIMITED, schedule, random.Random(0)) == 2.0
    assert next_delay(1, FailureKind.TIMEOUT, (0.0, 0.0), random.Random(0)) == 0.0


def test_floors_never_shorten_a_long_step() -> None:
    rng = random.Random(3)
    for _ in range(100):
        delay = next_delay(3, FailureKind.TIMEOUT, DEFAULT, rng)
        assert delay is not None and 1440.0 <= delay <= 2160.0


def test_custom_floors() -> None:
    floors = RetryFloors(timeout_s=30.0, rate_limited_s=60.0)
    schedule = (0.0, 1.0, 100.0)
    assert next_delay(1, FailureKind.TIMEOUT, schedule, random.Random(0), None, floors) == 30.0
    assert next_delay(1, FailureKind.RATE_LIMITED, schedule, random.Random(0), None,
                      floors) == 60.0


# --- next_delay: Retry-After ------------------------------------------------------------------


def test_retry_after_lengthens_delay() -> None:
    delay = next_delay(1, FailureKind.RATE_LIMITED, DEFAULT, random.Random(0), 60.0)
    assert delay == 60.0


def test_retry_after_capped_at_longest_step() -> None:
    delay = next_delay(1, FailureKind.RATE_LIMITED, DEFAULT, random.Random(0), 10**9)
    assert delay == 36000.0


def test_retry_after_is_capped_at_the_last_step_not_the_largest() -> None:
    schedule = (0.0, 5.0, 600.0, 60.0)
    delay = next_delay(1, FailureKind.RETRYABLE_STATUS, schedule, random.Random(0), 10_000.0)
    assert delay == 60.0
    # a step longer than the cap still applies: Retry-After only ever lengthens a wait
    delay = next_delay(2, FailureKind.RETRYABLE_STATUS, schedule, random.Random(0), 10_000.0)
    assert delay is not None and 480.0 <= delay <= 720.0


def test_retry_after_shorter_than_jittered_step_is_ignored() -> None:
    rng = random.Random(11)
    for _ in range(100):
        delay = next_delay(3, FailureKind.RATE_LIMITED, DEFAULT, rng, 1.0)
        assert delay is not None and delay >= 1440.0


def test_jitter_may_exceed_cap_but_retry_after_may_not() -> None:
    schedule = (0.0, 300.0)
    rng = random.Random(8)
    for _ in range(200):
        delay = next_delay(1, FailureKind.RATE_LIMITED, schedule, rng, 10_000.0)
        assert delay is not None and 300.0 <= delay <= 360.0


@pytest.mark.parametrize("retry_after", [-10.0, math.nan, math.inf, -math.inf])
def test_unusable_retry_after_falls_back_to_schedule(retry_after: float) -> None:
    rng = random.Random(2)
    delay = next_delay(2, FailureKind.RETRYABLE_STATUS, DEFAULT, rng, retry_after)
    assert delay is not None and 240.0 <= delay <= 360.0


# --- parse_retry_after ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("120", 120.0),
        ("0", 0.0),
        ("  30  ", 30.0),
        ("1.5", 1.5),
        ("-5", 0.0),
        ("Sun, 22 Nov 2026 10:01:00 GMT", 60.0),
        ("Sun, 22 Nov 2026 10:00:00 GMT", 0.0),
        ("Sun, 22 Nov 2026 09:00:00 GMT", 0.0),
        ("Sun, 22 Nov 2026 12:00:00 +0200", 0.0),
        ("Sun, 22 Nov 2026 10:00:30 -0000", 30.0),
        ("Sunday, 22-Nov-26 10:02:00 GMT", 120.0),  # RFC 850
        ("Sun Nov 22 10:03:00 2026", 180.0),  # asctime
        ("Mon, 23 Nov 2026 10:00:00 GMT", 86400.0),
    ],
)
def test_parse_retry_after(value: str, expected: float) -> None:
    assert parse_retry_after(value, NOW) == pytest.approx(expected)


@pytest.mark.parametrize(
    "value",
    [None, "", "   ", "soon", "1e3", "0x10", "12abc", "Sun, 99 Nov 2026 10:00:00 GMT",
     "Sun, 22 Foo 2026 10:00:00 GMT", "9" * 100, "--5", "nan", "inf"],
)
def test_parse_retry_after_garbage(value: str | None) -> None:
    assert parse_retry_after(value, NOW) is None


def test_parse_retry_after_uses_given_now_in_any_zone() -> None:
    now = datetime(2026, 11, 22, 11, 0, 0, tzinfo=timezone(timedelta(hours=1)))
    assert parse_retry_after("Sun, 22 Nov 2026 10:00:10 GMT", now) == pytest.approx(10.0)
