"""Circuit breaker, auto-disable and rate spacing (shared.core.backoff)."""

from __future__ import annotations

import bisect
import itertools
import random
from datetime import UTC, datetime, timedelta

import pytest

from shared.core.backoff import (
    BackoffPolicy,
    CircuitState,
    EndpointHealth,
    RateSlots,
    blocked_until,
    circuit_state,
    on_failure,
    on_success,
    reserve_send_time,
    should_auto_disable,
)

pytestmark = pytest.mark.unit

T0 = datetime(2026, 11, 22, 10, 0, 0, tzinfo=UTC)
POLICY = BackoffPolicy()


def seconds(s: float) -> timedelta:
    return timedelta(seconds=s)


def fail_n(n: int, at: datetime, health: EndpointHealth | None = None) -> EndpointHealth:
    health = health or EndpointHealth()
    for _ in range(n):
        health = on_failure(health, at, POLICY)
    return health


# --- policy -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("failures", "cooloff"),
    [(0, 0.0), (1, 0.0), (4, 0.0), (5, 5.0), (6, 10.0), (7, 20.0), (8, 40.0), (9, 80.0),
     (10, 160.0), (11, 300.0), (12, 300.0), (10_000, 300.0)],
)
def test_cooloff_ladder(failures: int, cooloff: float) -> None:
    assert POLICY.cooloff_s(failures) == cooloff


def test_policy_defaults() -> None:
    assert POLICY.failure_threshold == 5
    assert POLICY.base_cooloff_s == 5.0
    assert POLICY.max_cooloff_s == 300.0
    assert POLICY.auto_disable_after_s == 5 * 86400


@pytest.mark.parametrize(
    "kwargs",
    [{"failure_threshold": 0}, {"base_cooloff_s": -1.0}, {"max_cooloff_s": float("inf")},
     {"base_cooloff_s": 10.0, "max_cooloff_s": 5.0}, {"auto_disable_after_s": float("nan")}],
)
def test_policy_validation(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        BackoffPolicy(**kwargs)  # type: ignore[arg-type]


# --- circuit state ----------------------------------------------------------------------------


def test_healthy_endpoint_is_closed() -> None:
    assert circuit_state(EndpointHealth(), T0) is CircuitState.CLOSED
    assert blocked_until(EndpointHealth(), T0) is None


def test_state_from_open_until() -> None:
    health = EndpointHealth(consecutive_failures=5, circuit_open_until=T0 + seconds(5),
                            failing_since=T0)
    assert circuit_state(health, T0) is CircuitState.OPEN
    assert circuit_state(health, T0 + seconds(4.999)) is CircuitState.OPEN
    assert circuit_state(health, T0 + seconds(5)) is CircuitState.HALF_OPEN
    assert circuit_state(health, T0 + seconds(3600)) is CircuitState.HALF_OPEN
    assert blocked_until(health, T0 + seconds(1)) == T0 + seconds(5)
    assert blocked_until(health, T0 + seconds(5)) is None


def test_no_failures_means_closed_even_with_stale_open_until() -> None:
    health = EndpointHealth(consecutive_failures=0, circuit_open_until=T0 + seconds(60))
    assert circuit_state(health, T0) is CircuitState.CLOSED


# --- transitions ------------------------------------------------------------------------------


def test_failures_below_threshold_keep_circuit_closed() -> None:
    health = EndpointHealth()
    for i in range(4):
        health = on_failure(health, T0 + seconds(i), POLICY)
    assert health == EndpointHealth(consecutive_failures=4, circuit_open_until=None,
                                    failing_since=T0)
    assert circuit_state(health, T0 + seconds(4)) is CircuitState.CLOSED


def test_threshold_opens_circuit_then_probes_double_the_cooloff() -> None:
    now = T0
    health = fail_n(5, now)
    assert health.circuit_open_until == now + seconds(5)
    expected = [10.0, 20.0, 40.0, 80.0, 160.0, 300.0, 300.0]
    for cooloff in expected:
        assert health.circuit_open_until is not None
        now = health.circuit_open_until  # the probe goes as soon as the circuit half-opens
        assert circuit_state(health, now) is CircuitState.HALF_OPEN
        health = on_failure(health, now, POLICY)
        assert health.circuit_open_until == now + seconds(cooloff)
        assert circuit_state(health, now) is CircuitState.OPEN
    assert health.failing_since == T0


def test_failures_while_open_change_nothing() -> None:
    health = fail_n(5, T0)
    later = on_failure(health, T0 + seconds(1), POLICY)
    assert later == health


def test_concurrent_failures_do_not_inflate_cooloff() -> None:
    health = fail_n(10, T0)  # ten requests in flight all fail at once
    assert health.consecutive_failures == 5
    assert health.circuit_open_until == T0 + seconds(5)


@pytest.mark.parametrize("failures", [1, 4, 5, 9, 30])
def test_success_closes_and_resets(failures: int) -> None:
    health = fail_n(failures, T0)
    healed = on_success(health)
    assert healed == EndpointHealth()
    assert circuit_state(healed, T0) is CircuitState.CLOSED


def test_failing_since_restarts_after_success() -> None:
    health = on_success(fail_n(3, T0))
    health = on_failure(health, T0 + seconds(100), POLICY)
    assert health.failing_since == T0 + seconds(100)
    assert health.consecutive_failures == 1


def test_custom_policy() -> None:
    policy = BackoffPolicy(failure_threshold=2, base_cooloff_s=1.0, max_cooloff_s=3.0)
    health = on_failure(EndpointHealth(), T0, policy)
    assert health.circuit_open_until is None
    health = on_failure(health, T0, policy)
    assert health.circuit_open_until == T0 + seconds(1)
    health = on_failure(health, T0 + seconds(1), policy)
    assert health.circuit_open_until == T0 + seconds(3)
    health = on_failure(health, T0 + seconds(3), policy)
    assert health.circuit_open_until == T0 + seconds(6)


# --- auto-disable -----------------------------------------------------------------------------

WINDOW = seconds(5 * 86400)


def test_auto_disable_after_window_of_failures() -> None:
    health = EndpointHealth(consecutive_failures=50, circuit_open_until=None, failing_since=T0)
    assert should_auto_disable(health, T0 + WINDOW - seconds(1), POLICY) is False
    assert should_auto_disable(health, T0 + WINDOW, POLICY) is True
    assert should_auto_disable(health, T0 + WINDOW * 2, POLICY) is True


def test_no_auto_disable_when_healthy_or_below_threshold() -> None:
    assert should_auto_disable(EndpointHealth(), T0 + WINDOW * 10, POLICY) is False
    few = EndpointHealth(consecutive_failures=4, failing_since=T0)
    assert should_auto_disable(few, T0 + WINDOW * 10, POLICY) is False


def test_auto_disable_custom_window() -> None:
    policy = BackoffPolicy(auto_disable_after_s=3600.0)
    health = fail_n(5, T0)
    assert should_auto_disable(health, T0 + seconds(3599), policy) is False
    assert should_auto_disable(health, T0 + seconds(3600), policy) is True


def test_simulated_outage_probes_sparingly_and_disables_after_five_days() -> None:
    health, now, probes = EndpointHealth(), T0, 0
    while not should_auto_disable(health, now, POLICY):
        until = blocked_until(health, now)
        now = until if until is not None else now + seconds(1)
        health = on_failure(health, now, POLICY)
        probes += 1
    assert T0 + WINDOW <= now <= T0 + WINDOW + seconds(300)
    assert probes <= 5 * 86400 // 300 + 20  # about one probe per max cool-off


# --- rate spacing -----------------------------------------------------------------------------


def test_reserve_first_send_is_immediate() -> None:
    send_at, next_free = reserve_send_time(0.0, 100.0, 10)
    assert send_at == 100.0
    assert next_free == pytest.approx(100.1, abs=1e-5)
    assert next_free > 100.1


def test_reserve_spaces_back_to_back_sends() -> None:
    next_free, times = 0.0, []
    for _ in range(5):
        send_at, next_free = reserve_send_time(next_free, 50.0, 4)
        times.append(send_at)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert times[0] == 50.0
    assert all(gap >= 0.25 for gap in gaps)
    assert times[-1] == pytest.approx(51.0, abs=1e-4)


def test_idle_time_earns_no_burst() -> None:
    _, next_free = reserve_send_time(0.0, 0.0, 2)
    first, next_free = reserve_send_time(next_free, 1000.0, 2)
    second, _ = reserve_send_time(next_free, 1000.0, 2)
    assert first == 1000.0
    assert second >= 1000.5


@pytest.mark.parametrize("rate", [0, -1, 1.5, True, "10"])
def test_reserve_rejects_bad_rate(rate: object) -> None:
    with pytest.raises(ValueError):
        reserve_send_time(0.0, 0.0, rate)  # type: ignore[arg-type]


def max_in_any_window(times: list[float], width: float = 1.0) -> int:
    """Most sends in any closed window [t, t + width] (it suffices to start at a send)."""
    ordered = sorted(times)
    return max(bisect.bisect_right(ordered, t + width) - i for i, t in enumerate(ordered))


@pytest.mark.parametrize("rate", [1, 3, 10, 100, 1000])
@pytest.mark.parametrize("epoch", [0.0, 1_795_000_000.0])
def test_no_one_second_window_exceeds_rate(rate: int, epoch: float) -> None:
    rng = random.Random(rate)
    slots = RateSlots(rate)
    now, sends = epoch, []
    for _ in range(rate * 5 + 50):
        now += rng.expovariate(rate * 2.0)  # arrivals twice as fast as allowed, in bursts
        sends.append(slots.reserve(now))
    assert all(t >= epoch for t in sends)
    assert max_in_any_window(sends) <= rate


def test_saturated_throughput_reaches_the_rate() -> None:
    slots = RateSlots(100)
    sends = [slots.reserve(10.0) for _ in range(1001)]
    assert sends[0] == 10.0
    assert 20.0 <= sends[-1] <= 20.01  # 1000 gaps of just over 10 ms


def test_rate_slots_set_rate_and_validation() -> None:
    slots = RateSlots(1)
    assert slots.reserve(0.0) == 0.0
    assert slots.reserve(0.0) >= 1.0
    slots.set_rate(10)
    third = slots.reserve(0.0)
    fourth = slots.reserve(0.0)
    assert fourth - third >= 0.1
    with pytest.raises(ValueError):
        slots.set_rate(0)
    with pytest.raises(ValueError):
        RateSlots(0)
