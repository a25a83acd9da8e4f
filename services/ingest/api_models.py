"""Models of the Events, feed and reconciliation APIs (docs/api.md).

:class:`EventCreate` and :class:`BatchItem` check each event's envelope in
:mod:`services.ingest.event_validation` (``data`` is read and kept as the producer's own bytes
by :mod:`services.ingest.event_reading`; the model states its JSON form). The response models
describe what the handlers answer; they are the OpenAPI document's response schemas.
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
    Timestamp,
)

MAX_ORDERING_KEY = 256
MAX_BATCH_EVENTS = 500
MAX_IDEMPOTENCY_KEY = 255

OrderingKey = Annotated[str, msgspec.Meta(
    min_length=1, max_length=MAX_ORDERING_KEY, pattern=r"^[^\x00-\x1f\x7f]+$",
    description="Events of one account with the same key are delivered to each endpoint in "
                "acceptance order; 1..256 characters without control characters.")]
IdempotencyKey = Annotated[str, msgspec.Meta(
    min_length=1, max_length=MAX_IDEMPOTENCY_KEY, pattern=r"^[\x20-\x7e]+$",
    description="1..255 printable ASCII characters; the same key with the same event is "
                "answered as the first time for 24 hours.")]
EventData = Annotated[JsonObject, msgspec.Meta(
    description="The payload, delivered byte for byte as sent: at most 32 levels deep, no "
                "member named twice in one object, no lone UTF-16 surrogate.")]

EVENT_RULES: dict[str, str] = {
    "account_id": "account_id must be 1..64 of [A-Za-z0-9_-]",
    "type": "type must be 1..128 of [A-Za-z0-9_.-]",
    "data": "data is required and must be a JSON object",
    "ordering_key": f"ordering_key must be a string of 1..{MAX_ORDERING_KEY} characters "
                    "without control characters",
    "idempotency_key": "idempotency_key must be 1..255 printable ASCII characters",
}


class EventCreate(RequestModel, kw_only=True):
    """Body of ``POST /v1/events``."""

    RULES: ClassVar[dict[str, str]] = EVENT_RULES
    account_id: AccountId
    type: EventType
    data: EventData
    ordering_key: OrderingKey | None = None


class BatchItem(EventCreate, kw_only=True):
    """One event of ``POST /v1/events/batch``; its own ``idempotency_key`` replaces the
    header."""

    idempotency_key: IdempotencyKey | None = None


BatchEntry = Annotated[Any, msgspec.Meta(
    description="An event in the form of BatchItem. Each item is checked on its own: one that "
                "is not a valid BatchItem gets its error in its place in the answer (param "
                "events[i].field) and does not stop the others, so the request itself accepts "
                "any value here.",
    extra_json_schema={"anyOf": [{"$ref": "#/components/schemas/BatchItem"}, {}]})]


class EventBatch(RequestModel, kw_only=True):
    """Body of ``POST /v1/events/batch``: 1..500 events, accepted or refused one by one
    (each item is checked with :class:`BatchItem`)."""

    RULES: ClassVar[dict[str, str]] = {
        "events": f"events must be a list of 1..{MAX_BATCH_EVENTS} event objects"}
    events: Annotated[list[BatchEntry], msgspec.Meta(min_length=1, max_length=MAX_BATCH_EVENTS)]


class EventAccepted(msgspec.Struct, kw_only=True):
    """The answer to an accepted event (and to each accepted batch item)."""

    id: EventId
    account_id: AccountId
    type: EventType
    ordering_key: str | None
    created_at: Timestamp
    delivery_count: Annotated[int, msgspec.Meta(ge=0, description=(
        "Deliveries created: one per enabled endpoint of the account subscribed to the type."))]


BatchResult = Annotated[dict[str, Any], msgspec.Meta(
    description="The accepted event, or the error that refused the item (its param prefixed "
                "events[i].).",
    extra_json_schema={"anyOf": [{"$ref": "#/components/schemas/EventAccepted"},
                                 {"$ref": "#/components/schemas/ErrorBody"}]})]


class BatchAccepted(msgspec.Struct, kw_only=True):
    """One result per item, in request order."""

    data: list[BatchResult]


class Event(EventAccepted, kw_only=True):
    """An event with its ``data`` exactly as sent."""

    data: JsonObject


class EventList(msgspec.Struct, kw_only=True):
    """A page of events, newest first."""

    data: list[Event]
    has_more: bool
    next_cursor: str | None


class Delivery(msgspec.Struct, kw_only=True):
    """The delivery of an event to one endpoint."""

    id: DeliveryId
    endpoint_id: EndpointId
    status: DeliveryStatus
    attempt_count: int
    last_attempt_at: Timestamp | None
    next_attempt_at: Timestamp | None
    last_status_code: int | None


class EventWithDeliveries(Event, kw_only=True):
    """``GET /v1/events/{id}``: the event and its deliveries."""

    deliveries: list[Delivery]


class Attempt(msgspec.Struct, kw_only=True):
    """One HTTP attempt of a delivery."""

    id: AttemptId
    attempt: Annotated[int, msgspec.Meta(ge=1)]
    started_at: Timestamp
    duration_ms: int | None
    status_code: int | None
    error: str | None
    response_excerpt: str | None


class AttemptList(msgspec.Struct, kw_only=True):
    """A page of attempts, by attempt number."""

    data: list[Attempt]
    has_more: bool
    next_cursor: str | None


class FeedToken(msgspec.Struct, kw_only=True):
    """The endpoint's feed token (derived from its current secret)."""

    token: str


class WebhookBody(msgspec.Struct, kw_only=True):
    """The body every attempt of the delivery sends."""

    id: EventId
    type: EventType
    timestamp: Timestamp
    account_id: AccountId
    data: JsonObject


class FeedItem(msgspec.Struct, kw_only=True):
    """One event routed to the endpoint."""

    webhook_id: str
    event_id: EventId
    type: EventType
    created_at: Timestamp
    delivery_id: DeliveryId
    status: DeliveryStatus
    attempt_count: int
    last_attempt_at: Timestamp | None
    next_attempt_at: Timestamp | None
    last_status_code: int | None
    body: WebhookBody


class FeedPage(msgspec.Struct, kw_only=True):
    """A feed page; ``next_cursor`` is never null: keep it to resume later."""

    data: list[FeedItem]
    has_more: bool
    next_cursor: str


ReconcileLine = Annotated[str, msgspec.Meta(description=(
    "One JSON object per line: {\"kind\": \"missing\", \"id\"}, {\"kind\": \"open\", ...}, "
    "{\"kind\": \"failed\", ...}, and last {\"kind\": \"summary\", ...} (a stream without "
    "its summary line is incomplete; {\"kind\": \"error\", \"error\"} says why)."))]
ReconcileUpload = Annotated[Any, msgspec.Meta(description=(
    "Text, not JSON: the ids you sent, one per line, as NDJSON ({\"id\": ...} or a JSON "
    "string per line) or CSV (an optional header naming id, idempotency_key or event_id). A "
    "malformed line is a 400 naming it."))]
IdType = Literal["idempotency_key", "event_id"]

