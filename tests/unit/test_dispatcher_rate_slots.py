"""Rate slots: spacing, the send window and the late-send verdict, and the theorem of
:mod:`services.dispatcher.rate_slots` checked by simulation against the real claim policy."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.dispatcher.claim_plan import (
    Claim,
    ClaimConfig,
    DeliveryRow,
    EndpointSlot,
    plan_claims,
)
from services.dispatcher.model import Pending
from services.dispatcher.offsets import Ticket
from services.dispatcher.rate_slots import (
    LATE_SEND_TOLERANCE_S,
    RATE_SAFETY,
    GiveUp,
    SendNow,
    SendWindow,
    WaitFor,
    send_verdict,
    send_window,
    slot_spacing_us,
)
from shared.core.backoff import EndpointHealth
from shared.core.delivery_message import DeliveryMessage

NOW = datetime(2026, 12, 4, 12, 0, 0, tzinfo=UTC)
CFG = ClaimConfig(first_delay_s=0.0, lease_s=25.0, rate_horizon_s=1.0)


def most_in_closed_window(times: list[float], window_s: float = 1.0) -> int:
    """The most times within any closed window ``[a, a + window_s]``."""
    ordered = sorted(times)
    best, start = 0, 0
    for end, t in enumerate(ordered):
        while t - ordered[start] > window_s:
            start += 1
        best = max(best, end - start + 1)
    return best


@pytest.mark.parametrize("rate", [1, 2, 3, 7, 10, 33, 99, 100, 1000, 999_983])
def test_rate_spacings_add_up_to_the_safety_span(rate: int) -> None:
    spacing = slot_spacing_us(rate)
    assert rate * spacing >= 1_050_000
    assert (spacing - 1) * rate < 1_050_000  # the smallest such spacing


@pytest.mark.parametrize("rate", [0, -1, True, 2.5])
def test_rate_spacing_refuses_non_rates(rate: object) -> None:
    with pytest.raises(ValueError):
        slot_spacing_us(rate)  # type: ignore[arg-type]


def test_tolerance_leaves_a_margin_under_the_safety_span() -> None:
    assert 0.048 < LATE_SEND_TOLERANCE_S < RATE_SAFETY - 1.0


def test_window_waits_at_the_reads_end_and_ends_from_its_start() -> None:
    window = send_window(100.0, 100.004, 0.3, rate_limited=True)
    assert window.not_before == pytest.approx(100.304)
    assert window.not_after == pytest.approx(100.3 + LATE_SEND_TOLERANCE_S)
    assert send_window(100.0, 100.004, -0.001, rate_limited=False) == SendWindow(100.004, None)


def test_verdict_waits_then_sends_then_gives_up() -> None:
    window = SendWindow(10.0, 10.049)
    early = send_verdict(window, 9.5)
    assert isinstance(early, WaitFor) and early.seconds == pytest.approx(0.5)
    assert send_verdict(window, 10.0) == SendNow()
    assert send_verdict(window, 10.049) == SendNow()
    late = send_verdict(window, 10.126)
    assert isinstance(late, GiveUp) and late.late_s == pytest.approx(0.077)


def test_a_read_slower_than_the_tolerance_gives_up_without_waiting() -> None:
    window = send_window(100.0, 100.06, 0.5, rate_limited=True)  # 60 ms round trip
    verdict = send_verdict(window, 100.06)
    assert isinstance(verdict, GiveUp) and verdict.late_s == pytest.approx(0.011)


def test_no_rate_limit_never_gives_up() -> None:
    assert send_verdict(SendWindow(10.0, None), 1e6) == SendNow()


def test_the_issues_late_send_made_eleven_sends_in_a_second_and_is_now_refused() -> None:
    """Slots 105 ms apart at a limit of 10; the first send left 77 ms late. Sending it anyway
    (the old behaviour) put 11 sends into 0.973 s; the verdict gives that slot up."""
    slots = [i * slot_spacing_us(10) / 1e6 for i in range(11)]
    sent_anyway = [slots[0] + 0.077, *slots[1:]]
    assert most_in_closed_window(sent_anyway) == 11
    window = SendWindow(slots[0], slots[0] + LATE_SEND_TOLERANCE_S)
    assert isinstance(send_verdict(window, slots[0] + 0.077), GiveUp)
    at_the_tolerance = [slots[0] + LATE_SEND_TOLERANCE_S, *slots[1:]]
    assert most_in_closed_window(at_the_tolerance) == 10
    # the bound is tight: at RATE_SAFETY - 1 late, r + 1 sends meet a closed window
    assert most_in_closed_window([slots[0] + (RATE_SAFETY - 1.0), *slots[1:]]) == 11


def _req(n: int) -> Pending:
    message = DeliveryMessage(f"dlv_{n:06d}", f"evt_{n}", "ep1", "acct", None, None, 0)
    return Pending(Ticket("p", n, 1), message)


def _row(n: int, rate: int) -> DeliveryRow:
    return DeliveryRow(
        delivery_id=f"dlv_{n:06d}", endpoint_id="ep1", status="pending", generation=0,
        round_attempt_count=1, next_attempt_at=None, queued_at=NOW, lease_active=False,
        blocked=False, endpoint_enabled=True, endpoint_deleted=False, max_in_flight=10**6,
        rate_limit_per_s=rate)


claim_step = st.tuples(
    st.integers(0, 300_000),                 # microseconds since the previous claim
    st.floats(0.0, 0.08),                    # before the database read the clock
    st.floats(0.0, 0.08),                    # after the database read the clock
    st.floats(0.0, 0.15),                    # the attempt task's lateness waking up
    st.floats(0.0, 0.01),                    # preempted around reading the start time
)


@settings(max_examples=300, deadline=None)
@given(rate=st.integers(1, 60), steps=st.lists(claim_step, min_size=1, max_size=150))
def test_sends_that_keep_the_verdict_never_exceed_the_rate_in_any_second(
        rate: int, steps: list[tuple[int, float, float, float, float]]) -> None:
    """Claims of one endpoint from any number of dispatchers (serialised by the row lock, so
    their database times only grow), each through the real claim policy; each claim's read
    takes an arbitrary round trip, its task wakes arbitrarily late and may be preempted
    while it reads the start time it records. Every send the verdict
    lets out leaves within the tolerance of its slot, and no closed one-second window holds
    more than ``rate`` of them, for every rate. A given-up delivery is claimed again later
    (a later step) with a new slot."""
    endpoint = EndpointSlot(health=EndpointHealth(), probe_until=None, rate_next_free_at=None,
                            leased=0)
    db_now = NOW
    sends: list[float] = []
    given_up = 0
    for n, (gap_us, before, after, wake_late, preempted) in enumerate(steps):
        db_now += timedelta(microseconds=gap_us)
        action = plan_claims([_req(n)], {f"dlv_{n:06d}": _row(n, rate)}, {"ep1": endpoint},
                             db_now, CFG, random.Random(n))[0]
        if not isinstance(action, Claim):
            continue  # deferred: beyond the horizon; asked again at a later step
        assert action.rate_limited
        # the local clock is the real clock, in seconds since NOW; the database took its time
        # somewhere between the reads, which this test puts exactly at db_now
        read_at = (db_now - NOW).total_seconds()
        slot_at = (action.send_at - NOW).total_seconds()
        window = send_window(read_at - before, read_at + after,
                             (action.send_at - db_now).total_seconds(), rate_limited=True)
        clock = read_at + after + wake_late / 2   # the commit, then the task starts
        verdict = send_verdict(window, clock, clock + preempted)
        if isinstance(verdict, WaitFor):
            clock += verdict.seconds + wake_late
            verdict = send_verdict(window, clock, clock + preempted)
        if isinstance(verdict, GiveUp):
            given_up += 1
            continue
        assert isinstance(verdict, SendNow)
        recorded = clock + preempted / 2   # the start time read between the two readings
        assert slot_at - 1e-9 <= recorded <= slot_at + LATE_SEND_TOLERANCE_S + 1e-9
        sends.append(recorded)
    assert most_in_closed_window(sends) <= rate, (rate, sorted(sends), given_up)
