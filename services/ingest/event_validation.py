"""Validation of event bodies (single and batch) and rendering of the webhook body. Pure.

Rules (API.md "Events"): ``account_id`` 1..64 of ``[A-Za-z0-9_-]``, ``type`` 1..128 of
``[A-Za-z0-9_.-]``, ``data`` a JSON object, ``ordering_key`` an optional string of 1..256
characters without control characters (``null`` means absent). Unknown fields are refused.
Batch items may also carry ``idempotency_key``. Errors are :class:`InvalidRequest` whose
``param`` is the field's path, e.g. ``type`` or ``events[3].type``.

Numbers inside ``data`` are parsed as JSON numbers by orjson (64-bit integers, doubles); the
webhook body is ``data`` re-rendered compactly, so whitespace is not preserved and integers
beyond 64 bits lose precision, as in JavaScript.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import orjson

from shared.core.errors import ApiError, InvalidRequest, PayloadTooLarge
from shared.core.idempotency import check_idempotency_key, request_hash

ACCOUNT_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
TYPE_RE = re.compile(r"[A-Za-z0-9_.-]{1,128}")
MAX_ORDERING_KEY = 256
MAX_BATCH_EVENTS = 500
BATCH_ITEM_ENVELOPE_BYTES = 1024  # an item's fields besides data: account_id, type, keys
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
EVENT_FIELDS = frozenset({"account_id", "type", "data", "ordering_key"})
BATCH_ITEM_FIELDS = EVENT_FIELDS | {"idempotency_key"}


@dataclass(frozen=True, slots=True)
class EventInput:
    """A validated event waiting for its group commit.

    ``data_json`` is ``data`` rendered compactly (the bytes the webhook body embeds);
    ``request_hash`` is set exactly when ``idempotency_key`` is.
    """

    account_id: str
    type: str
    data_json: bytes
    ordering_key: str | None
    idempotency_key: str | None
    request_hash: bytes | None
    param_prefix: str = ""


def batch_body_limit(max_payload_bytes: int) -> int:
    """Largest ``POST /v1/events/batch`` body: 500 events of the largest accepted size, each
    with room for its other fields, so any batch the contract allows fits (128.5 MiB with the
    default 256 KiB payload limit; the body is read incrementally and refused the moment it
    crosses this)."""
    return MAX_BATCH_EVENTS * (max_payload_bytes + BATCH_ITEM_ENVELOPE_BYTES)


def _string(obj: dict[str, Any], name: str, pattern: re.Pattern[str], what: str,
            prefix: str) -> str:
    value = obj.get(name)
    if value is None:
        raise InvalidRequest(f"{prefix}{name} is required", param=f"{prefix}{name}")
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise InvalidRequest(f"{prefix}{name} must be {what}", param=f"{prefix}{name}")
    return value


def _ordering_key(obj: dict[str, Any], prefix: str) -> str | None:
    value = obj.get("ordering_key")
    if value is None:
        return None
    if (not isinstance(value, str) or not 1 <= len(value) <= MAX_ORDERING_KEY
            or _CONTROL_RE.search(value)):
        raise InvalidRequest(
            f"{prefix}ordering_key must be a string of 1..{MAX_ORDERING_KEY} characters "
            "without control characters", param=f"{prefix}ordering_key")
    return value


def _reject_unknown(obj: dict[str, Any], allowed: frozenset[str], prefix: str) -> None:
    for key in obj:
        if key not in allowed:
            raise InvalidRequest(f"unknown field {prefix}{key!r}", param=f"{prefix}{key}")


def validate_event(obj: dict[str, Any], *, max_data_bytes: int,
                   idempotency_key: str | None = None, prefix: str = "",
                   allowed: frozenset[str] = EVENT_FIELDS) -> EventInput:
    """Check one event object; raises InvalidRequest (400) or PayloadTooLarge (413).

    ``idempotency_key`` is the already-checked header value (single POST); batch items pass
    ``allowed=BATCH_ITEM_FIELDS`` and carry their own ``idempotency_key`` field instead.
    """
    _reject_unknown(obj, allowed, prefix)
    account_id = _string(obj, "account_id", ACCOUNT_ID_RE, "1..64 of [A-Za-z0-9_-]", prefix)
    event_type = _string(obj, "type", TYPE_RE, "1..128 of [A-Za-z0-9_.-]", prefix)
    data = obj.get("data")
    if not isinstance(data, dict):
        raise InvalidRequest(f"{prefix}data is required and must be a JSON object",
                             param=f"{prefix}data")
    ordering_key = _ordering_key(obj, prefix)
    if "idempotency_key" in allowed and obj.get("idempotency_key") is not None:
        idempotency_key = check_idempotency_key(obj["idempotency_key"],
                                                f"{prefix}idempotency_key")
    data_json = orjson.dumps(data)
    if len(data_json) > max_data_bytes:
        raise PayloadTooLarge(f"{prefix}data is {len(data_json)} bytes; the limit is "
                              f"{max_data_bytes}", param=f"{prefix}data")
    digest = (request_hash(account_id, event_type, data, ordering_key)
              if idempotency_key is not None else None)
    return EventInput(account_id, event_type, data_json, ordering_key, idempotency_key, digest,
                      prefix)


def validate_batch(obj: dict[str, Any], max_data_bytes: int) -> list[EventInput | ApiError]:
    """Check a batch body ``{"events": [...]}``.

    The envelope's errors raise InvalidRequest (the whole request is a 400); each item's error
    is returned in its place, so the valid items can still be accepted.
    """
    _reject_unknown(obj, frozenset({"events"}), "")
    events = obj.get("events")
    if not isinstance(events, list) or not 1 <= len(events) <= MAX_BATCH_EVENTS:
        raise InvalidRequest(f"events must be a list of 1..{MAX_BATCH_EVENTS} event objects",
                             param="events")
    out: list[EventInput | ApiError] = []
    for index, item in enumerate(events):
        prefix = f"events[{index}]."
        try:
            if not isinstance(item, dict):
                raise InvalidRequest(f"events[{index}] must be a JSON object",
                                     param=f"events[{index}]")
            out.append(validate_event(item, max_data_bytes=max_data_bytes, prefix=prefix,
                                      allowed=BATCH_ITEM_FIELDS))
        except ApiError as exc:
            out.append(exc)
    return out


def webhook_body(event_id: str, timestamp: str, event: EventInput) -> bytes:
    """The webhook body ``{"id","type","timestamp","account_id","data"}``, compact JSON.

    Byte-identical to ``orjson.dumps`` of that dict: every string but ``data`` is restricted
    to characters JSON never escapes, and ``data`` was rendered by orjson already.
    """
    head = (f'{{"id":"{event_id}","type":"{event.type}","timestamp":"{timestamp}",'
            f'"account_id":"{event.account_id}","data":')
    return head.encode() + event.data_json + b"}"
