"""Models of the admin API (docs/api.md, "Admin API").

The request models check the bodies in :mod:`services.dlq_replay.schemas` and
:mod:`services.dlq_replay.console.portal_api` (what JSON Schema cannot state: a reason that
is only spaces, timestamps that must parse, ``since`` before ``until``, is checked after
them); the response models describe the answers. Both are the OpenAPI document's schemas.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

import msgspec

from shared.http.models import RequestModel
from shared.models.common import (
    AccountId,
    AttemptId,
    DeliveryId,
    DeliveryStatus,
    EndpointId,
    EventId,
    EventType,
    JsonObject,
    ReplayId,
    Timestamp,
)

MAX_REASON_CHARS = 1000
MAX_ENDPOINT_IDS = 1000
MAX_RATE = 10000
DEFAULT_RATE = 100
DEFAULT_EXPIRES_IN_S = 3600
MIN_EXPIRES_IN_S, MAX_EXPIRES_IN_S = 60, 86400

Reason = Annotated[str, msgspec.Meta(
    min_length=1, max_length=MAX_REASON_CHARS, pattern=r"\S",
    description="Why: recorded in the audit log (leading and trailing spaces removed).")]
TimestampParam = Annotated[str, msgspec.Meta(
    description="RFC 3339 with a time zone, e.g. 2026-01-31T12:00:00Z.",
    extra_json_schema={"format": "date-time"})]

REPLAY_RULES: dict[str, str] = {
    "reason": f"reason is required: say why you replay (at most {MAX_REASON_CHARS} "
              "characters)",
    "endpoint_ids": f"endpoint_ids must be a list of 1..{MAX_ENDPOINT_IDS} endpoint ids",
    "include_succeeded": "include_succeeded must be true or false",
    "max_per_second": f"max_per_second must be an integer from 1 to {MAX_RATE}",
    "filter": "filter must be an object",
}


class EventReplay(RequestModel, kw_only=True):
    """Body of ``POST /admin/v1/events/{event_id}/replay``."""

    RULES: ClassVar[dict[str, str]] = REPLAY_RULES
    WHOLE: ClassVar[frozenset[str]] = frozenset({"endpoint_ids"})
    reason: Reason
    endpoint_ids: Annotated[list[EndpointId], msgspec.Meta(
        min_length=1, max_length=MAX_ENDPOINT_IDS,
        description="Only these endpoints' deliveries; null or absent: all.")] | None = None
    include_succeeded: Annotated[bool, msgspec.Meta(
        description="Also send deliveries that succeeded again.")] = False


class ReplayFilterBody(RequestModel, kw_only=True):
    """Which dead letters a bulk replay takes; every field optional. ``since`` (inclusive)
    and ``until`` (exclusive) are on ``dead_at``."""

    endpoint_id: EndpointId | None = None
    account_id: AccountId | None = None
    type: EventType | None = None
    since: TimestampParam | None = None
    until: TimestampParam | None = None


class BulkReplay(RequestModel, kw_only=True):
    """Body of ``POST /admin/v1/replays``."""

    RULES: ClassVar[dict[str, str]] = REPLAY_RULES
    reason: Reason
    filter: ReplayFilterBody | None = None
    max_per_second: Annotated[int, msgspec.Meta(
        ge=1, le=MAX_RATE, description="Deliveries queued per second at most.")] = DEFAULT_RATE


class CancelReplay(RequestModel, kw_only=True):
    """Body of ``POST /admin/v1/replays/{id}/cancel`` (optional)."""

    RULES: ClassVar[dict[str, str]] = {
        "reason": f"reason must be a string of at most {MAX_REASON_CHARS} characters"}
    reason: Annotated[str, msgspec.Meta(max_length=MAX_REASON_CHARS)] | None = None


class PortalSessionCreate(RequestModel, kw_only=True):
    """Body of ``POST /admin/v1/portal-sessions``."""

    RULES: ClassVar[dict[str, str]] = {
        "account_id": "account_id must be 1..64 characters of letters, digits, '_' or '-'",
        "expires_in_s": f"expires_in_s must be an integer from {MIN_EXPIRES_IN_S} to "
                        f"{MAX_EXPIRES_IN_S}"}
    account_id: AccountId
    expires_in_s: Annotated[int, msgspec.Meta(
        ge=MIN_EXPIRES_IN_S, le=MAX_EXPIRES_IN_S,
        description="Seconds the link and its session last.")] = DEFAULT_EXPIRES_IN_S


class PortalSession(msgspec.Struct, kw_only=True):
    """A one-time merchant portal link."""

    url: str
    account_id: AccountId
    expires_at: Timestamp


class DeadLetter(msgspec.Struct, kw_only=True):
    """A delivery that exhausted its attempts (or was refused for good)."""

    delivery_id: DeliveryId
    event_id: EventId
    endpoint_id: EndpointId
    account_id: AccountId
    type: EventType
    reason: str
    attempt_count: int
    last_status_code: int | None
    last_error: str | None
    dead_at: Timestamp
    replay_count: int
    delivery_status: DeliveryStatus


class DeadLetterList(msgspec.Struct, kw_only=True):
    """A page of dead letters, newest first."""

    data: list[DeadLetter]
    has_more: bool
    next_cursor: str | None


class AdminAttempt(msgspec.Struct, kw_only=True):
    """One HTTP attempt."""

    id: AttemptId
    attempt: int
    started_at: Timestamp
    duration_ms: int | None
    status_code: int | None
    error: str | None
    response_excerpt: str | None


class DeadLetterSummary(msgspec.Struct, kw_only=True):
    """Why and when the delivery died, and how often it was replayed."""

    reason: str
    dead_at: Timestamp
    replay_count: int


class AdminDelivery(msgspec.Struct, kw_only=True):
    """A delivery with every attempt."""

    id: DeliveryId
    endpoint_id: EndpointId
    status: DeliveryStatus
    attempt_count: int
    generation: int
    last_attempt_at: Timestamp | None
    next_attempt_at: Timestamp | None
    last_status_code: int | None
    last_error: str | None
    dead_letter: DeadLetterSummary | None
    attempts: list[AdminAttempt]


class AdminEvent(msgspec.Struct, kw_only=True):
    """An event, its deliveries and their attempts."""

    id: EventId
    account_id: AccountId
    type: EventType
    ordering_key: str | None
    created_at: Timestamp
    delivery_count: int
    data: Annotated[JsonObject | None, msgspec.Meta(
        description="As sent; null only for a stored body that is not one of ours.")]
    deliveries: list[AdminDelivery]


class ReplayOutcome(msgspec.Struct, kw_only=True):
    """What a single-event replay did with one delivery."""

    delivery_id: DeliveryId
    endpoint_id: EndpointId
    outcome: str


class EventReplayResult(msgspec.Struct, kw_only=True):
    """The answer to a single-event replay."""

    replay_id: ReplayId
    deliveries: list[ReplayOutcome]


class ReplayJob(msgspec.Struct, kw_only=True):
    """A replay (bulk or single-event) and its progress."""

    id: ReplayId
    status: Literal["running", "completed", "cancelled", "failed"]
    matched: int
    queued: int
    skipped: int
    created_by: str
    reason: str
    kind: str
    filter: JsonObject | None
    max_per_second: int | None
    error: str | None
    created_at: Timestamp
    updated_at: Timestamp
    finished_at: Timestamp | None


class AuditEntry(msgspec.Struct, kw_only=True):
    """One operator action."""

    id: int | str
    at: Timestamp
    operator: str
    action: str
    target: str | None
    reason: str | None
    details: Any


class AuditLog(msgspec.Struct, kw_only=True):
    """A page of the audit log, newest first."""

    data: list[AuditEntry]
    has_more: bool
    next_cursor: str | None


class TableStorage(msgspec.Struct, kw_only=True):
    """One table's size."""

    table: str
    partitions: int
    table_bytes: int
    index_bytes: int
    total_bytes: int
    approx_rows: int


class Storage(msgspec.Struct, kw_only=True):
    """Storage per table, the oldest retained day, the retention and what was purged."""

    tables: list[TableStorage]
    oldest_retained_day: str | None
    oldest_event_at: Timestamp | None
    retention: JsonObject
    horizon: JsonObject


class LedgerCheck(msgspec.Struct, kw_only=True):
    """One invariant and whether it holds."""

    name: str
    holds: bool
    detail: str


class Ledger(msgspec.Struct, kw_only=True):
    """Deliveries created = succeeded + dead + cancelled + open, over [from, to)."""

    from_: Timestamp = msgspec.field(name="from")
    to: Timestamp
    as_of: Timestamp
    events_accepted: int
    deliveries_created: int
    deliveries_by_status: dict[str, int]
    balanced: bool
    checks: list[LedgerCheck]
    oldest_open_delivery: JsonObject | None
