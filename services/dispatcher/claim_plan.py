"""What the claim step does with each consumed message: the pure policy behind the claim SQL.

Given the delivery rows and the (locked) shared state of their endpoints, every request gets
one action, in request order:

- ``Skip``: nothing to do now; the message is acknowledged. Finished or cancelled deliveries,
  stale generations, deliveries leased elsewhere, not yet due (the scheduler re-publishes them
  when due) or blocked behind an earlier delivery of their ordering key (released when that
  one finishes).
- ``Cancel``: the endpoint was deleted. ``KillDisabled``: the endpoint is disabled; the
  delivery goes dead with reason ``endpoint_disabled``.
- ``Park(at)``: reschedule without an attempt (first-attempt delay, open circuit, probe in
  flight, local overflow).
- ``Defer(delay_s)``: keep the message in memory and ask again shortly (``max_in_flight``
  reached across all dispatchers, or the next rate slot is beyond the horizon).
- ``Claim``: lease it; send no earlier than ``send_at``. At most ``max_in_flight`` unexpired
  leases per endpoint; rate slots at least :func:`rate_slots.slot_spacing_us` apart
  (``RATE_SAFETY / rate``), so that a send leaving at most
  :data:`rate_slots.LATE_SEND_TOLERANCE_S` after its slot can never put more than ``rate``
  sends into any one-second window (the theorem is in :mod:`rate_slots`; a later send gives
  its slot up); one probe while the circuit is half-open. ``Claim.rate_limited`` says the
  send must keep to that tolerance.

Endpoint slots are mutated in place; callers write the changed ones back. Times are the
database clock's, so dispatchers on different machines agree.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from services.dispatcher.model import Pending
from services.dispatcher.rate_slots import RATE_SAFETY, slot_spacing_us
from shared.core.backoff import CircuitState, EndpointHealth, circuit_state
from shared.core.delivery_status import OPEN_STATUSES

__all__ = ["RATE_SAFETY", "Action", "Cancel", "Claim", "ClaimConfig", "Defer", "DeliveryRow",
           "EndpointSlot", "KillDisabled", "Park", "Skip", "plan_claims"]


@dataclass(frozen=True, slots=True)
class DeliveryRow:
    """The claim-relevant state of one delivery and its endpoint."""

    delivery_id: str
    endpoint_id: str
    status: str
    generation: int
    round_attempt_count: int
    next_attempt_at: datetime | None
    queued_at: datetime
    lease_active: bool
    blocked: bool
    endpoint_enabled: bool
    endpoint_deleted: bool
    max_in_flight: int
    rate_limit_per_s: int | None


@dataclass(slots=True)
class EndpointSlot:
    """An endpoint's shared state as locked by the claim transaction; ``changed`` marks it."""

    health: EndpointHealth
    probe_until: datetime | None
    rate_next_free_at: datetime | None
    leased: int
    changed: bool = False


@dataclass(frozen=True)
class ClaimConfig:
    """Timing knobs of the claim policy."""

    first_delay_s: float          # schedule[0]: before the first attempt of a round
    lease_s: float                # delivery timeout + margin
    rate_horizon_s: float         # claim a rate slot at most this far ahead
    defer_s: float = 0.1          # ask again after this when max_in_flight is reached
    circuit_spread_s: float = 0.5  # parked deliveries return spread over this window
    probe_recheck_s: float = 1.0   # while a probe is in flight, look again this often


@dataclass(frozen=True, slots=True)
class Skip:
    reason: str


@dataclass(frozen=True, slots=True)
class Cancel:
    pass


@dataclass(frozen=True, slots=True)
class KillDisabled:
    pass


@dataclass(frozen=True, slots=True)
class Park:
    at: datetime
    reason: str


@dataclass(frozen=True, slots=True)
class Defer:
    delay_s: float
    reason: str


@dataclass(frozen=True, slots=True)
class Claim:
    send_at: datetime
    lease_until: datetime
    probe: bool
    rate_limited: bool = False   # the send must leave within the tolerance of send_at


Action = Skip | Cancel | KillDisabled | Park | Defer | Claim


def _row_action(req: Pending, row: DeliveryRow | None, now: datetime,
                cfg: ClaimConfig) -> Action | None:
    """Decisions that need only the delivery row; None means: go on to the endpoint gate."""
    if row is None:
        return Skip("unknown")
    if row.status not in OPEN_STATUSES:
        return Skip("finished")
    if req.message.generation < row.generation:
        return Skip("stale")
    if row.endpoint_deleted:
        return Cancel()
    if not row.endpoint_enabled:
        return KillDisabled()
    if row.lease_active:
        return Skip("leased")
    if row.next_attempt_at is not None and row.next_attempt_at > now:
        return Skip("not_due")
    if (row.next_attempt_at is None and row.round_attempt_count == 0
            and cfg.first_delay_s > 0):
        due = row.queued_at + timedelta(seconds=cfg.first_delay_s)
        if due > now:
            return Park(due, "first_delay")
    if row.blocked:
        return Skip("blocked")
    if req.park_s is not None:
        return Park(now + timedelta(seconds=req.park_s), "overflow")
    return None


def _circuit_action(slot: EndpointSlot, now: datetime, cfg: ClaimConfig,
                    rng: random.Random) -> Action | None:
    """Park while the circuit is open or its probe is in flight; None when sending is allowed."""
    state = circuit_state(slot.health, now)
    spread = timedelta(seconds=rng.uniform(0.0, cfg.circuit_spread_s))
    if state is CircuitState.OPEN:
        assert slot.health.circuit_open_until is not None
        return Park(slot.health.circuit_open_until + spread, "circuit_open")
    if state is CircuitState.HALF_OPEN and slot.probe_until is not None and slot.probe_until > now:
        recheck = now + timedelta(seconds=cfg.probe_recheck_s)
        return Park(min(slot.probe_until, recheck) + spread, "probe_in_flight")
    return None


def _gate(row: DeliveryRow, slot: EndpointSlot, now: datetime, cfg: ClaimConfig,
          rng: random.Random) -> Action:
    """Circuit, max_in_flight and rate for one delivery whose row allows an attempt."""
    circuit = _circuit_action(slot, now, cfg, rng)
    if circuit is not None:
        return circuit
    if slot.leased >= row.max_in_flight:
        return Defer(cfg.defer_s, "max_in_flight")
    send_at = now
    rate_limited = row.rate_limit_per_s is not None and row.rate_limit_per_s >= 1
    if rate_limited:
        assert row.rate_limit_per_s is not None
        if slot.rate_next_free_at is not None and slot.rate_next_free_at > now:
            send_at = slot.rate_next_free_at
        ahead = (send_at - now).total_seconds()
        if ahead > cfg.rate_horizon_s:
            return Defer(max(ahead - cfg.rate_horizon_s, 0.01), "rate_limit")
        spacing = timedelta(microseconds=slot_spacing_us(row.rate_limit_per_s))
        slot.rate_next_free_at = send_at + spacing
        slot.changed = True
    probe = circuit_state(slot.health, now) is CircuitState.HALF_OPEN
    lease_until = send_at + timedelta(seconds=cfg.lease_s)
    if probe:
        slot.probe_until = lease_until
        slot.changed = True
    slot.leased += 1
    return Claim(send_at, lease_until, probe, rate_limited)


def plan_claims(requests: Sequence[Pending], rows: Mapping[str, DeliveryRow],
                slots: Mapping[str, EndpointSlot], now: datetime, cfg: ClaimConfig,
                rng: random.Random) -> list[Action]:
    """One action per request, in order (see the module docstring). Mutates ``slots``.

    A delivery requested twice in one batch is acted on once; the repeat is skipped.
    """
    actions: list[Action] = []
    seen: set[str] = set()
    for req in requests:
        delivery_id = req.message.delivery_id
        if delivery_id in seen:
            actions.append(Skip("duplicate"))
            continue
        seen.add(delivery_id)
        row = rows.get(delivery_id)
        action = _row_action(req, row, now, cfg)
        if action is None:
            assert row is not None
            slot = slots.get(row.endpoint_id)
            action = Skip("unknown") if slot is None else _gate(row, slot, now, cfg, rng)
        actions.append(action)
    return actions
