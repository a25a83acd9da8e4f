"""Pure planning of what a batch of finished attempts does to endpoint health.

Which results count: a 2xx is a success; a transport failure, 3xx, 408, 425, 429 or 5xx is a
failure; any other 4xx (410 included, which disables the endpoint anyway) proves the endpoint
is up but says nothing about its health, so it changes nothing. Results are applied in batch
order at the database clock's ``now``; the circuit rules are :mod:`shared.core.backoff`'s.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import Enum

from services.dispatcher.model import Finished
from shared.core.backoff import (
    BackoffPolicy,
    EndpointHealth,
    on_failure,
    on_success,
    should_auto_disable,
)
from shared.core.decision import AttemptResult, Dead, Succeeded
from shared.core.retry import FailureKind
from shared.core.timefmt import format_ts

GONE_REASON = "gone"


class Effect(Enum):
    SUCCESS = "success"
    FAILURE = "failure"
    NEUTRAL = "neutral"


def effect_of(result: AttemptResult) -> Effect:
    """How one attempt counts for its endpoint's health (see the module docstring)."""
    kind = result.kind
    if kind is None:
        return Effect.SUCCESS
    if kind in (FailureKind.NON_RETRYABLE_STATUS, FailureKind.GONE):
        return Effect.NEUTRAL
    return Effect.FAILURE


@dataclass
class HealthChange:
    """The new health of one endpoint after the batch, and whether to disable it (why)."""

    before: EndpointHealth
    after: EndpointHealth
    clear_probe: bool = False
    disable_reason: str | None = None

    @property
    def changed(self) -> bool:
        return self.before != self.after or self.clear_probe


def auto_disable_reason(health: EndpointHealth) -> str:
    """``failing_since_<RFC 3339>``: the disabled_reason of an endpoint that kept failing."""
    return f"failing_since_{format_ts(health.failing_since)}"


def is_clean(health: EndpointHealth) -> bool:
    """True when a success leaves ``health`` as it is (no failures counted, circuit closed);
    :data:`outcome_sql.CLEAN_HEALTH_SQL` is the same test in SQL."""
    return (health.consecutive_failures == 0 and health.circuit_open_until is None
            and health.failing_since is None)


def plain_successes(finished: Sequence[Finished]) -> bool:
    """True when every attempt of ``finished`` succeeded, none was a circuit probe and none
    had an ordering key: then, on endpoints whose health is clean, the batch changes no
    health, disables nothing, dead-letters nothing and announces no successor, so recording
    it is the deliveries' update and the attempt rows only."""
    return all(isinstance(item.decision, Succeeded) and effect_of(item.result) is Effect.SUCCESS
               and not item.claimed.probe and item.claimed.ordering_key is None
               for item in finished)


def plan_health(finished: Sequence[Finished], current: Mapping[str, EndpointHealth],
                now: datetime, policy: BackoffPolicy) -> dict[str, HealthChange]:
    """One :class:`HealthChange` per endpoint in ``finished``; ``now`` is an aware datetime."""
    changes: dict[str, HealthChange] = {}
    for item in finished:
        endpoint_id = item.claimed.endpoint_id
        change = changes.get(endpoint_id)
        if change is None:
            before = current.get(endpoint_id, EndpointHealth())
            change = changes[endpoint_id] = HealthChange(before=before, after=before)
        effect = effect_of(item.result)
        if effect is Effect.SUCCESS:
            change.after = on_success(change.after)
        elif effect is Effect.FAILURE:
            change.after = on_failure(change.after, now, policy)
        if item.claimed.probe:
            change.clear_probe = True
        if isinstance(item.decision, Dead) and item.decision.disable_endpoint:
            change.disable_reason = GONE_REASON
    for change in changes.values():
        if change.disable_reason is None and should_auto_disable(change.after, now, policy):
            change.disable_reason = auto_disable_reason(change.after)
    return changes
