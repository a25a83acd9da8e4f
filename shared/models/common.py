"""Field types and objects every API shares: ids, account ids, timestamps, pages, errors."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

import msgspec

ACCOUNT_ID_CHARS = r"[A-Za-z0-9_-]{1,64}"
EVENT_TYPE_CHARS = r"[A-Za-z0-9_.-]{1,128}"
ACCOUNT_ID_PATTERN = f"^{ACCOUNT_ID_CHARS}$"
EVENT_TYPE_PATTERN = f"^{EVENT_TYPE_CHARS}$"
ACCOUNT_ID_RE = re.compile(ACCOUNT_ID_CHARS)  # use with fullmatch (a final newline is refused)
EVENT_TYPE_RE = re.compile(EVENT_TYPE_CHARS)
ID_BODY = "[0-7][0-9A-HJKMNP-TV-Z]{25}"

AccountId = Annotated[str, msgspec.Meta(
    pattern=ACCOUNT_ID_PATTERN, min_length=1, max_length=64,
    description="A producer's account: 1..64 of letters, digits, '_' or '-'.")]
EventType = Annotated[str, msgspec.Meta(
    pattern=EVENT_TYPE_PATTERN, min_length=1, max_length=128,
    description="An event type such as invoice.paid: 1..128 of letters, digits, '_', '.', '-'.")]
Timestamp = Annotated[str, msgspec.Meta(
    description="RFC 3339 UTC with milliseconds, e.g. 2026-01-31T12:00:00.000Z.",
    extra_json_schema={"format": "date-time"})]


def prefixed_id(prefix: str, what: str) -> Any:
    """The type of an id such as ``ep_01J...``: the prefix, '_' and 26 Crockford base32."""
    return Annotated[str, msgspec.Meta(pattern=f"^{prefix}_{ID_BODY}$",
                                       description=f"{what} id ({prefix}_ + 26 characters).")]


EndpointId = prefixed_id("ep", "An endpoint")
EventId = prefixed_id("evt", "An event")
DeliveryId = prefixed_id("dlv", "A delivery")
AttemptId = prefixed_id("att", "An attempt")
ReplayId = prefixed_id("rpl", "A replay")
JsonObject = Annotated[dict[str, Any], msgspec.Meta(description="A JSON object.")]
DeliveryStatus = Literal["pending", "retrying", "succeeded", "dead", "cancelled"]


class ErrorDetail(msgspec.Struct, forbid_unknown_fields=True):
    """What went wrong; ``param`` names the offending field, parameter or header, or is null."""

    type: Annotated[str, msgspec.Meta(description=(
        "invalid_request, authentication_failed, forbidden, not_found, conflict, "
        "idempotency_conflict, payload_too_large, unsupported_media_type, rate_limited or "
        "unavailable."))]
    message: Annotated[str, msgspec.Meta(description="A sentence for a person.")]
    param: str | None


class ErrorBody(msgspec.Struct, forbid_unknown_fields=True):
    """Every error answer: ``{"error": {"type", "message", "param"}}``."""

    error: ErrorDetail


class Health(msgspec.Struct):
    """``/healthz`` (``ok``) and ``/readyz`` (``ready``; a 503 error body otherwise)."""

    status: Literal["ok", "ready"]
