"""Models of the Endpoints API (docs/api.md, "Endpoints").

The request models state every limit JSON Schema can express; what it cannot (a URL's host
and canonical form, a secret's decoded length, a pattern listed twice) is checked after them
by :mod:`shared.endpoints.validation`.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

import msgspec

from shared.http.models import RequestModel
from shared.models.common import AccountId, EndpointId, Timestamp

MAX_URL_LENGTH = 2048
MAX_EVENT_TYPES = 100
MAX_DESCRIPTION_LENGTH = 1024
MAX_RATE_LIMIT_PER_S = 100_000
MIN_MAX_IN_FLIGHT, MAX_MAX_IN_FLIGHT, DEFAULT_MAX_IN_FLIGHT = 1, 1000, 10
MAX_METADATA_KEYS, MAX_METADATA_KEY_LENGTH, MAX_METADATA_VALUE_LENGTH = 50, 64, 512
MAX_GRACE_PERIOD_S, DEFAULT_GRACE_PERIOD_S = 604_800, 86_400
EVENT_TYPE_PATTERN_RE = r"^(\*|[A-Za-z0-9_.-]{1,128}|[A-Za-z0-9_.-]{1,126}\.\*)$"
SECRET_PATTERN = r"^whsec_[A-Za-z0-9+/]{32,88}={0,2}$"

Url = Annotated[str, msgspec.Meta(
    min_length=1, max_length=MAX_URL_LENGTH,
    description="An absolute http(s) URL; its host must be public unless the deployment "
                "allows private targets.", extra_json_schema={"format": "uri"})]
EventTypePattern = Annotated[str, msgspec.Meta(
    pattern=EVENT_TYPE_PATTERN_RE,
    description="invoice.paid (exact), invoice.* (a prefix) or * (everything).")]
EventTypes = Annotated[list[EventTypePattern], msgspec.Meta(
    min_length=1, max_length=MAX_EVENT_TYPES,
    description="The event types delivered to the endpoint; distinct patterns.")]
Description = Annotated[str, msgspec.Meta(max_length=MAX_DESCRIPTION_LENGTH)]
RateLimit = Annotated[int, msgspec.Meta(
    ge=1, le=MAX_RATE_LIMIT_PER_S, description="Requests per second at most; null: no limit.")]
MaxInFlight = Annotated[int, msgspec.Meta(
    ge=MIN_MAX_IN_FLIGHT, le=MAX_MAX_IN_FLIGHT,
    description="Concurrent deliveries to the endpoint at most.")]
MetadataKey = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_METADATA_KEY_LENGTH)]
MetadataValue = Annotated[str, msgspec.Meta(max_length=MAX_METADATA_VALUE_LENGTH)]
Metadata = Annotated[dict[MetadataKey, MetadataValue], msgspec.Meta(
    max_length=MAX_METADATA_KEYS, description="Your labels: strings to strings.")]
Secret = Annotated[str, msgspec.Meta(
    pattern=SECRET_PATTERN,
    description="whsec_ followed by the base64 of 24..64 random bytes.")]
GracePeriod = Annotated[int, msgspec.Meta(
    ge=0, le=MAX_GRACE_PERIOD_S,
    description="Seconds the previous secret keeps signing beside the new one.")]

RULES: dict[str, str] = {
    "account_id": "account_id must be 1..64 characters of letters, digits, '_' or '-'",
    "url": "url must be an absolute http(s) URL of at most 2048 characters",
    "event_types": f"event_types must be a non-empty list of at most {MAX_EVENT_TYPES} event "
                   "type patterns",
    "description": f"description must be a string of at most {MAX_DESCRIPTION_LENGTH} "
                   "characters, or null",
    "enabled": "enabled must be true or false",
    "rate_limit_per_s": f"rate_limit_per_s must be an integer from 1 to {MAX_RATE_LIMIT_PER_S}, "
                        "or null",
    "max_in_flight": f"max_in_flight must be an integer from {MIN_MAX_IN_FLIGHT} to "
                     f"{MAX_MAX_IN_FLIGHT}",
    "metadata": f"metadata must be an object of at most {MAX_METADATA_KEYS} keys of 1.."
                f"{MAX_METADATA_KEY_LENGTH} characters mapping to strings of at most "
                f"{MAX_METADATA_VALUE_LENGTH} characters",
    "secret": "secret must be 'whsec_' followed by the base64 of 24..64 bytes",
    "grace_period_s": f"grace_period_s must be an integer from 0 to {MAX_GRACE_PERIOD_S}",
}


class EndpointCreate(RequestModel, kw_only=True):
    """Body of ``POST /v1/endpoints``."""

    RULES: ClassVar[dict[str, str]] = RULES
    account_id: AccountId
    url: Url
    event_types: EventTypes = msgspec.field(default_factory=lambda: ["*"])
    description: Description | None = None
    enabled: bool = True
    rate_limit_per_s: RateLimit | None = None
    max_in_flight: MaxInFlight = DEFAULT_MAX_IN_FLIGHT
    metadata: Metadata | None = None
    secret: Secret | msgspec.UnsetType = msgspec.UNSET


class EndpointPatch(RequestModel, kw_only=True):
    """Body of ``PATCH /v1/endpoints/{id}``: only the fields given change."""

    RULES: ClassVar[dict[str, str]] = RULES
    url: Url | msgspec.UnsetType = msgspec.UNSET
    event_types: EventTypes | msgspec.UnsetType = msgspec.UNSET
    description: Description | msgspec.UnsetType | None = msgspec.UNSET
    enabled: bool | msgspec.UnsetType = msgspec.UNSET
    rate_limit_per_s: RateLimit | msgspec.UnsetType | None = msgspec.UNSET
    max_in_flight: MaxInFlight | msgspec.UnsetType = msgspec.UNSET
    metadata: Metadata | msgspec.UnsetType | None = msgspec.UNSET


class RotateSecret(RequestModel, kw_only=True):
    """Body of ``POST /v1/endpoints/{id}/rotate-secret`` (optional)."""

    RULES: ClassVar[dict[str, str]] = RULES
    grace_period_s: GracePeriod = DEFAULT_GRACE_PERIOD_S


class Endpoint(msgspec.Struct, kw_only=True):
    """An endpoint (never with its secret)."""

    id: EndpointId
    account_id: AccountId
    url: str
    event_types: list[str]
    description: str | None
    enabled: bool
    status: Literal["enabled", "disabled"]
    disabled_reason: str | None
    rate_limit_per_s: int | None
    max_in_flight: int
    metadata: dict[str, str]
    created_at: Timestamp
    updated_at: Timestamp


class EndpointWithSecret(Endpoint, kw_only=True):
    """The endpoint as created: the only answer besides ``/secret`` that carries the secret."""

    secret: str


class EndpointList(msgspec.Struct, kw_only=True):
    """A page of endpoints, newest first."""

    data: list[Endpoint]
    has_more: bool
    next_cursor: str | None


class SecretAnswer(msgspec.Struct, kw_only=True):
    """The endpoint's current signing secret."""

    secret: str

