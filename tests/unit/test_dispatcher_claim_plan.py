"""The claim policy: which consumed message is skipped, parked, deferred, cancelled or claimed."""

from __future__ import annotations

import itertools
import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.dispatcher.claim_plan import (
    RATE_SAFETY,
    Cancel,
    Claim,
    ClaimConfig,
    Defer,
    DeliveryRow,
    EndpointSlot,
    KillDisabled,
    Park,
    Skip,
    plan_claims,
)
from services.dispatcher.model import Pending
from services.dispatcher.offsets import Ticket
from shared.core.backoff import EndpointHealth
from shared.core.delivery_message import DeliveryMessage

NOW = datetime(2026, 11, 22, 10, 0, 0, tzinfo=UTC)
CFG = ClaimConfig(first_delay_s=0.0, lease_s=25.0, rate_horizon_s=1.0)


def req(n: int, endpoint_id: str = "ep1", generation: int = 0,
        park_s: float | None = None) -> Pending:
    msg = DeliveryMessage(f"dlv_{n}", f"evt_{n}", endpoint_id, "acct", None, None, generation)
    return Pending(Ticket("p", n, 1), msg, park_s)


def row(n: int, endpoint_id: str = "ep1", **changes: Any) -> DeliveryRow:
    base = DeliveryRow(
        delivery_id=f"dlv_{n}", endpoint_id=endpoint_id, status="pending", generation=0,
        round_attempt_count=0, next_attempt_at=None, queued_at=NOW, lease_active=False,
        blocked=False, endpoint_enabled=True, endpoint_deleted=False, max_in_flight=10,
        rate_limit_per_s=None)
    return replace(base, **changes)


def slot(**changes: object) -> EndpointSlot:
    base = EndpointSlot(health=EndpointHealth(), probe_until=None, rate_next_free_at=None,
                        leased=0)
    for key, value in changes.items():
        setattr(base, key, value)
    return base


def plan(requests: list[Pending], rows: list[DeliveryRow], slots: dict[str, EndpointSlot],
         cfg: ClaimConfig = CFG) -> list[object]:
    return list(plan_claims(requests, {r.delivery_id: r for r in rows}, slots, NOW, cfg,
                            random.Random(1)))


@pytest.mark.parametrize("changes,expected", [
    ({"status": "succeeded"}, Skip("finished")),
    ({"status": "cancelled"}, Skip("finished")),
    ({"generation": 1}, Skip("stale")),
    ({"endpoint_deleted": True}, Cancel()),
    ({"endpoint_enabled": False}, KillDisabled()),
    ({"lease_active": True}, Skip("leased")),
    ({"next_attempt_at": NOW + timedelta(seconds=5)}, Skip("not_due")),
    ({"blocked": True}, Skip("blocked")),
])
def test_row_states_settle_without_an_attempt(changes: dict[str, Any],
                                              expected: object) -> None:
    assert plan([req(1)], [row(1, **changes)], {"ep1": slot()}) == [expected]


def test_unknown_and_duplicate_requests_are_skipped() -> None:
    actions = plan([req(1), req(1), req(2)], [row(1)], {"ep1": slot()})
    assert isinstance(actions[0], Claim)
    assert actions[1:] == [Skip("duplicate"), Skip("unknown")]


def test_first_attempt_waits_for_schedule_zero() -> None:
    cfg = replace(CFG, first_delay_s=30.0)
    fresh = row(1, queued_at=NOW - timedelta(seconds=10))
    old = row(2, queued_at=NOW - timedelta(seconds=31))
    retried = row(3, round_attempt_count=1, next_attempt_at=NOW - timedelta(seconds=1))
    actions = plan([req(1), req(2), req(3)], [fresh, old, retried], {"ep1": slot()}, cfg)
    assert actions[0] == Park(NOW + timedelta(seconds=20), "first_delay")
    assert isinstance(actions[1], Claim) and isinstance(actions[2], Claim)


def test_overflow_hint_parks_the_delivery() -> None:
    actions = plan([req(1, park_s=7.0)], [row(1)], {"ep1": slot()})
    assert actions == [Park(NOW + timedelta(seconds=7), "overflow")]


def test_max_in_flight_counts_existing_leases_and_this_batch() -> None:
    rows = [row(n, max_in_flight=3) for n in range(4)]
    actions = plan([req(n) for n in range(4)], rows, {"ep1": slot(leased=1)})
    assert [type(a) for a in actions] == [Claim, Claim, Defer, Defer]
    claim = actions[0]
    assert isinstance(claim, Claim)
    assert claim.send_at == NOW and claim.lease_until == NOW + timedelta(seconds=25)


def test_rate_limit_spaces_sends_and_defers_past_the_horizon() -> None:
    rows = [row(n, rate_limit_per_s=4) for n in range(8)]
    endpoint = slot()
    actions = plan([req(n) for n in range(8)], rows, {"ep1": endpoint})
    claims = [a for a in actions if isinstance(a, Claim)]
    deferred = [a for a in actions if isinstance(a, Defer)]
    gaps = [(b.send_at - a.send_at).total_seconds() for a, b in itertools.pairwise(claims)]
    assert len(claims) == 4 and len(deferred) == 4  # 0, 0.26, 0.53, 0.79 s; then > 1 s
    assert all(gap >= RATE_SAFETY / 4 for gap in gaps)
    assert all(d.reason == "rate_limit" and d.delay_s > 0 for d in deferred)
    assert endpoint.changed and endpoint.rate_next_free_at is not None
    assert endpoint.rate_next_free_at > claims[-1].send_at


def test_rate_slot_in_the_future_is_respected() -> None:
    later = NOW + timedelta(seconds=0.5)
    actions = plan([req(1)], [row(1, rate_limit_per_s=1)], {"ep1": slot(
        rate_next_free_at=later)})
    claim = actions[0]
    assert isinstance(claim, Claim) and claim.send_at == later
    assert claim.lease_until == later + timedelta(seconds=25)


def test_open_circuit_parks_until_it_closes() -> None:
    until = NOW + timedelta(seconds=30)
    health = EndpointHealth(consecutive_failures=5, circuit_open_until=until)
    action = plan([req(1)], [row(1)], {"ep1": slot(health=health)})[0]
    assert isinstance(action, Park) and action.reason == "circuit_open"
    assert until <= action.at <= until + timedelta(seconds=CFG.circuit_spread_s)


def test_half_open_circuit_sends_exactly_one_probe() -> None:
    health = EndpointHealth(consecutive_failures=5, circuit_open_until=NOW)
    endpoint = slot(health=health)
    actions = plan([req(1), req(2)], [row(1), row(2)], {"ep1": endpoint})
    probe, other = actions
    assert isinstance(probe, Claim) and probe.probe
    assert isinstance(other, Park) and other.reason == "probe_in_flight"
    assert endpoint.probe_until == probe.lease_until and endpoint.changed
    # another dispatcher sees the probe in flight and parks, re-checking soon
    again = plan([req(3)], [row(3)], {"ep1": endpoint})[0]
    assert isinstance(again, Park)
    assert again.at <= NOW + timedelta(seconds=CFG.probe_recheck_s + CFG.circuit_spread_s)


def test_endpoints_are_planned_independently() -> None:
    rows = [row(1, "a", max_in_flight=1), row(2, "a", max_in_flight=1), row(3, "b")]
    actions = plan([req(1, "a"), req(2, "a"), req(3, "b")], rows, {"a": slot(), "b": slot()})
    assert [type(a) for a in actions] == [Claim, Defer, Claim]
