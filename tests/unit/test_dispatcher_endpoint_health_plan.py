"""Endpoint health after a batch of attempts: circuit, probes, 410 and auto-disable."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.dispatcher.endpoint_health_plan import (
    Effect,
    effect_of,
    is_clean,
    plain_successes,
    plan_health,
)
from services.dispatcher.model import Claimed, Finished, Pending
from services.dispatcher.offsets import Ticket
from shared.core.backoff import BackoffPolicy, EndpointHealth
from shared.core.decision import AttemptResult, Dead, Decision, RetryAt, Succeeded
from shared.core.delivery_message import DeliveryMessage
from shared.core.retry import FailureKind

NOW = datetime(2026, 11, 22, 10, 0, 0, tzinfo=UTC)
POLICY = BackoffPolicy(failure_threshold=3, base_cooloff_s=5.0, max_cooloff_s=60.0,
                       auto_disable_after_s=3600.0)


def finished(endpoint_id: str, result: AttemptResult, decision: Decision,
             probe: bool = False) -> Finished:
    msg = DeliveryMessage("dlv_1", "evt_1", endpoint_id, "acct", None, None)
    claimed = Claimed(
        pending=Pending(Ticket("p", 0, 1), msg), delivery_id="dlv_1", event_id="evt_1",
        endpoint_id=endpoint_id, account_id="acct", event_type="t", ordering_key=None,
        url="http://x", secrets=(b"k" * 24,), body=b"{}", event_created_at=NOW,
        attempt_count=0, round_attempt_count=0, send_at_s=0.0, probe=probe)
    return Finished(claimed, result, decision, NOW)


OK = AttemptResult(200)
FAIL = AttemptResult(503)
RETRY = RetryAt(NOW, 1.0)


@pytest.mark.parametrize("result,effect", [
    (AttemptResult(204), Effect.SUCCESS),
    (AttemptResult(500), Effect.FAILURE),
    (AttemptResult(429), Effect.FAILURE),
    (AttemptResult(302), Effect.FAILURE),
    (AttemptResult(None, FailureKind.TIMEOUT), Effect.FAILURE),
    (AttemptResult(400), Effect.NEUTRAL),
    (AttemptResult(410), Effect.NEUTRAL),
])
def test_effect_of_each_kind_of_result(result: AttemptResult, effect: Effect) -> None:
    assert effect_of(result) is effect


def test_consecutive_failures_open_the_circuit_once() -> None:
    batch = [finished("a", FAIL, RETRY) for _ in range(5)]
    change = plan_health(batch, {}, NOW, POLICY)["a"]
    assert change.after.consecutive_failures == 3  # failures while open are no evidence
    assert change.after.circuit_open_until == NOW + timedelta(seconds=5)
    assert change.after.failing_since == NOW and change.changed
    assert change.disable_reason is None


def test_a_success_closes_and_a_probe_is_cleared() -> None:
    sick = EndpointHealth(consecutive_failures=4, circuit_open_until=NOW,
                          failing_since=NOW - timedelta(minutes=5))
    change = plan_health([finished("a", OK, Succeeded(), probe=True)], {"a": sick}, NOW,
                         POLICY)["a"]
    assert change.after == EndpointHealth()
    assert change.clear_probe


def test_neutral_results_change_nothing() -> None:
    change = plan_health([finished("a", AttemptResult(400), Dead("non_retryable_status"))], {},
                         NOW, POLICY)["a"]
    assert not change.changed and change.disable_reason is None


def test_410_disables_with_reason_gone() -> None:
    change = plan_health([finished("a", AttemptResult(410), Dead("gone", True))], {}, NOW,
                         POLICY)["a"]
    assert change.disable_reason == "gone"


def test_failing_for_the_whole_window_disables_the_endpoint() -> None:
    since = NOW - timedelta(hours=2)
    health = EndpointHealth(consecutive_failures=7, circuit_open_until=NOW,
                            failing_since=since)
    change = plan_health([finished("a", FAIL, RETRY)], {"a": health}, NOW, POLICY)["a"]
    assert change.disable_reason == "failing_since_2026-11-22T08:00:00.000Z"
    recent = EndpointHealth(consecutive_failures=7, circuit_open_until=NOW,
                            failing_since=NOW - timedelta(minutes=30))
    assert plan_health([finished("a", FAIL, RETRY)], {"a": recent}, NOW,
                       POLICY)["a"].disable_reason is None


_HEALTH = st.builds(EndpointHealth, st.integers(0, 3),
                    st.none() | st.just(NOW + timedelta(seconds=5)),
                    st.none() | st.just(NOW - timedelta(seconds=5)))


@given(_HEALTH)
def test_clean_health_is_exactly_what_a_success_leaves_unchanged(health: EndpointHealth) -> None:
    change = plan_health([finished("a", OK, Succeeded())], {"a": health}, NOW, POLICY)["a"]
    assert is_clean(health) is (not change.changed)


def test_plain_successes_are_unkeyed_non_probe_2xx_successes_only() -> None:
    ok = finished("a", OK, Succeeded())
    assert plain_successes([ok, finished("b", AttemptResult(204), Succeeded())])
    assert plain_successes([])
    keyed = replace(ok, claimed=replace(ok.claimed, ordering_key="order-1"))
    dead = finished("a", AttemptResult(400), Dead("non_retryable_status"))
    for other in (finished("a", OK, Succeeded(), probe=True), keyed, finished("a", FAIL, RETRY),
                  dead):
        assert not plain_successes([ok, other])
