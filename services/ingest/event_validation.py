"""Validation of event bodies (single and batch) and rendering of the webhook body. Pure.

Rules (docs/api.md "Events"): ``account_id`` 1..64 of ``[A-Za-z0-9_-]``, ``type`` 1..128 of
``[A-Za-z0-9_.-]``, ``data`` a JSON object, ``ordering_key`` an optional string of 1..256
characters without control characters (``null`` means absent). Unknown fields are refused.
Batch items may also carry ``idempotency_key``. Errors are :class:`InvalidRequest` whose
``param`` is the field's path, e.g. ``type`` or ``events[3].type``.

Exact payloads: ``data`` is kept as the producer's own JSON text, byte for byte (whitespace,
number spellings such as ``1E5`` or ``-0.0``, integers of any size, escapes such as
``\u00e9``), and the webhook body embeds exactly those bytes. Bodies are read with
:mod:`shared.core.json_text`, so nothing is rounded on the way. ``data`` is refused (400
naming the field) when it:

- nests deeper than :data:`MAX_DATA_DEPTH` levels (``data`` itself is level 1; every
  object or array inside adds one);
- names a member twice in one object (receivers disagree on which value wins);
- holds a lone UTF-16 surrogate escape such as ``"\ud800"`` (not a character; many
  receivers refuse or replace it). A valid pair (``"\ud83d\ude00"``) is kept as sent.

``"\u0000"`` (an escaped NUL) is valid JSON and is kept and delivered as sent: the body is
stored as bytes, never as ``text`` or ``jsonb``. A raw control character (NUL included)
inside a string, ``NaN``/``Infinity``, or bytes that are not UTF-8 make the request body
not JSON (400 for the whole request). In a batch, the refusals above are per item: the
valid items are still accepted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from services.ingest.api_models import MAX_BATCH_EVENTS as MAX_BATCH_EVENTS
from services.ingest.api_models import MAX_ORDERING_KEY, BatchItem, EventCreate
from services.ingest.event_reading import (
    EventRead,
    Fields,
    Problem,
    printable,
    read_batch,
    read_event,
)
from shared.core.errors import ApiError, InvalidRequest, PayloadTooLarge
from shared.core.event_body import render_body
from shared.core.event_fingerprint import check_idempotency_key, request_hash
from shared.core.json_text import TOO_DEEP, nesting_depth
from shared.models.common import ACCOUNT_ID_RE as ACCOUNT_ID_RE
from shared.models.common import EVENT_TYPE_RE

# limits, patterns and field names come from the models the OpenAPI document is built from
# (services/ingest/api_models.py); tests/unit/test_event_model_agreement.py checks that these
# inline checks and the models accept and refuse the same envelopes
TYPE_RE = EVENT_TYPE_RE
MAX_DATA_DEPTH = 32  # body depth 33: within the default limits of common receivers' parsers
BATCH_ITEM_ENVELOPE_BYTES = 1024  # an item's fields besides data: account_id, type, keys
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
EVENT_FIELDS = frozenset(EventCreate.__struct_fields__)
BATCH_ITEM_FIELDS = frozenset(BatchItem.__struct_fields__)


@dataclass(frozen=True, slots=True)
class EventInput:
    """A validated event waiting for its group commit.

    ``data_json`` is ``data`` exactly as the producer sent it (the bytes the webhook body
    embeds);
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


def _string(fields: Fields, name: str, pattern: re.Pattern[str], what: str,
            prefix: str) -> str:
    value = fields.get(name)
    if value is None:
        raise InvalidRequest(f"{prefix}{name} is required", param=f"{prefix}{name}")
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise InvalidRequest(f"{prefix}{name} must be {what}", param=f"{prefix}{name}")
    return value


def _ordering_key(fields: Fields, prefix: str) -> str | None:
    value = fields.get("ordering_key")
    if value is None:
        return None
    if isinstance(value, Problem):
        raise InvalidRequest(f"{prefix}ordering_key {value.text}",
                             param=f"{prefix}ordering_key")
    if (not isinstance(value, str) or not 1 <= len(value) <= MAX_ORDERING_KEY
            or _CONTROL_RE.search(value)):
        raise InvalidRequest(
            f"{prefix}ordering_key must be a string of 1..{MAX_ORDERING_KEY} characters "
            "without control characters", param=f"{prefix}ordering_key")
    return value


def _data(read: EventRead, prefix: str, max_data_bytes: int) -> tuple[bytes, dict[str, Any]]:
    """``data``'s exact source bytes and parsed value; 400 / 413 naming the field."""
    param = f"{prefix}data"
    value = read.fields.get("data")
    if isinstance(value, Problem):
        text = (f"is nested deeper than the limit of {MAX_DATA_DEPTH} levels"
                if value.text == TOO_DEEP else value.text)
        raise InvalidRequest(f"{param} {text}", param=param)
    source = read.data_source
    if not isinstance(value, dict) or source is None:
        raise InvalidRequest(f"{param} is required and must be a JSON object", param=param)
    if len(source) > max_data_bytes:
        raise PayloadTooLarge(f"{param} is {len(source)} bytes; the limit is {max_data_bytes}",
                              param=param)
    depth = (nesting_depth(source)
             if source.count(b"{") + source.count(b"[") > MAX_DATA_DEPTH else 0)
    if depth > MAX_DATA_DEPTH:
        raise InvalidRequest(f"{param} is nested {depth} levels deep; the limit is "
                             f"{MAX_DATA_DEPTH}", param=param)
    return source, value


def _reject_unknown(fields: Fields, allowed: frozenset[str], prefix: str) -> None:
    for key in fields:
        if key not in allowed:
            raise InvalidRequest(f"unknown field {prefix}{key!r}",
                                 param=f"{prefix}{printable(key)}")


def _event(read: EventRead, *, max_data_bytes: int, idempotency_key: str | None, prefix: str,
           allowed: frozenset[str]) -> EventInput:
    """Check one event's fields; raises InvalidRequest (400) or PayloadTooLarge (413)."""
    fields = read.fields
    _reject_unknown(fields, allowed, prefix)
    account_id = _string(fields, "account_id", ACCOUNT_ID_RE, "1..64 of [A-Za-z0-9_-]", prefix)
    event_type = _string(fields, "type", TYPE_RE, "1..128 of [A-Za-z0-9_.-]", prefix)
    data_json, data = _data(read, prefix, max_data_bytes)
    ordering_key = _ordering_key(fields, prefix)
    if "idempotency_key" in allowed and fields.get("idempotency_key") is not None:
        idempotency_key = check_idempotency_key(fields["idempotency_key"],
                                                f"{prefix}idempotency_key")
    digest = (request_hash(account_id, event_type, data, ordering_key)
              if idempotency_key is not None else None)
    return EventInput(account_id, event_type, data_json, ordering_key, idempotency_key, digest,
                      prefix)


def parse_event(raw: bytes, *, max_data_bytes: int,
                idempotency_key: str | None = None) -> EventInput:
    """Read and check a ``POST /v1/events`` body; raises InvalidRequest (400) or
    PayloadTooLarge (413). ``idempotency_key`` is the already-checked header value."""
    return _event(read_event(raw), max_data_bytes=max_data_bytes, idempotency_key=idempotency_key,
                  prefix="", allowed=EVENT_FIELDS)


def _batch_item(read: EventRead | Any, index: int, max_data_bytes: int) -> EventInput | ApiError:
    """One item: an event, or the error that refuses it."""
    if not isinstance(read, EventRead):
        return InvalidRequest(f"events[{index}] must be a JSON object", param=f"events[{index}]")
    try:
        return _event(read, max_data_bytes=max_data_bytes, idempotency_key=None,
                      prefix=f"events[{index}].", allowed=BATCH_ITEM_FIELDS)
    except ApiError as exc:
        return exc


def parse_batch(raw: bytes, max_data_bytes: int) -> list[EventInput | ApiError]:
    """Read and check a batch body ``{"events": [...]}``.

    A body that is not a JSON object with exactly the member ``events`` holding 1..500 items
    raises InvalidRequest (the whole request is a 400); each item's error is returned in its
    place, so the valid items can still be accepted.
    """
    members = read_batch(raw, MAX_BATCH_EVENTS)
    for name in members:
        if name != "events":
            raise InvalidRequest(f"unknown field {name!r}", param=printable(name))
    events = members.get("events")
    if not isinstance(events, list) or not 1 <= len(events) <= MAX_BATCH_EVENTS:
        raise InvalidRequest(f"events must be a list of 1..{MAX_BATCH_EVENTS} event objects",
                             param="events")
    return [_batch_item(item, index, max_data_bytes) for index, item in enumerate(events)]


def webhook_body(event_id: str, timestamp: str, event: EventInput) -> bytes:
    """The webhook body ``{"id","type","timestamp","account_id","data"}``: compact JSON
    around ``data`` exactly as the producer sent it."""
    return render_body(event_id, event.type, timestamp, event.account_id, event.data_json)
