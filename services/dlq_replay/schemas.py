"""Request bodies of the admin API, validated into frozen dataclasses (pure; no I/O).

Every parser checks its body with a model of :mod:`services.dlq_replay.api_models` first
(the OpenAPI document's schemas), then what JSON Schema cannot say; it raises
:class:`InvalidRequest` naming the offending field; unknown fields are refused. The parsed
forms are what the handlers act on and what the audit log records.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from services.dlq_replay.api_models import DEFAULT_RATE as DEFAULT_RATE
from services.dlq_replay.api_models import (
    BulkReplay,
    CancelReplay,
    EventReplay,
    ReplayFilterBody,
)
from shared.core.errors import InvalidRequest
from shared.core.timefmt import format_ts, parse_ts
from shared.http.models import convert_body
from shared.models.common import ACCOUNT_ID_RE, EVENT_TYPE_RE

_IDEMPOTENCY_KEY_RE = re.compile(r"^[\x20-\x7e]{1,255}$")


@dataclass(frozen=True)
class EventReplayRequest:
    """Body of ``POST /admin/v1/events/{id}/replay``; ``endpoint_ids`` None means all."""

    reason: str
    endpoint_ids: tuple[str, ...] | None
    include_succeeded: bool


@dataclass(frozen=True)
class ReplayFilter:
    """Which dead letters a bulk replay matches; None fields do not filter.

    ``since`` is inclusive and ``until`` exclusive, both on the dead letter's ``dead_at`` (the
    same meaning as on ``GET /admin/v1/dead-letters``).
    """

    endpoint_id: str | None = None
    account_id: str | None = None
    type: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def to_json(self) -> dict[str, str]:
        """The filter as stored and shown: only the fields that are set."""
        raw = {"endpoint_id": self.endpoint_id, "account_id": self.account_id,
               "type": self.type, "since": format_ts(self.since), "until": format_ts(self.until)}
        return {k: v for k, v in raw.items() if v is not None}


@dataclass(frozen=True)
class BulkReplayRequest:
    """Body of ``POST /admin/v1/replays``."""

    reason: str
    filter: ReplayFilter
    max_per_second: int


def _reason(reason: str) -> str:
    """The reason without surrounding spaces; one that is only spaces is refused."""
    if not reason.strip():
        raise InvalidRequest("reason is required: say why you replay", param="reason")
    return reason.strip()


def parse_event_replay(body: dict[str, Any]) -> EventReplayRequest:
    """Validate a single-event replay body (:class:`EventReplay`); endpoint ids deduplicated
    in order."""
    model = convert_body(body, EventReplay)
    endpoint_ids = None if model.endpoint_ids is None else tuple(dict.fromkeys(model.endpoint_ids))
    return EventReplayRequest(_reason(model.reason), endpoint_ids, model.include_succeeded)


def _optional_ts(value: str | None, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        return parse_ts(value)
    except ValueError as exc:
        raise InvalidRequest(f"filter.{name} must be an RFC 3339 timestamp",
                             param=f"filter.{name}") from exc


def parse_filter(raw: Any) -> ReplayFilter:
    """Validate a bulk replay filter: a JSON object (:class:`ReplayFilterBody`; every field
    optional), None, or an already converted model. Errors name ``filter.<field>``."""
    if raw is None:
        return ReplayFilter()
    if not isinstance(raw, ReplayFilterBody):
        if not isinstance(raw, dict):
            raise InvalidRequest("filter must be an object", param="filter")
        raw = convert_body(raw, ReplayFilterBody, prefix="filter")
    for name, value, pattern in (("account_id", raw.account_id, ACCOUNT_ID_RE),
                                 ("type", raw.type, EVENT_TYPE_RE)):
        if value is not None and not pattern.fullmatch(value):  # the model's `$` allows "\n"
            raise InvalidRequest(f"filter.{name} must be {pattern.pattern}",
                                 param=f"filter.{name}")
    result = ReplayFilter(endpoint_id=raw.endpoint_id, account_id=raw.account_id,
                          type=raw.type, since=_optional_ts(raw.since, "since"),
                          until=_optional_ts(raw.until, "until"))
    if result.since and result.until and result.since >= result.until:
        raise InvalidRequest("filter.since must be before filter.until", param="filter.since")
    return result


def parse_bulk_replay(body: dict[str, Any]) -> BulkReplayRequest:
    """Validate a bulk replay body (:class:`BulkReplay`); ``max_per_second`` is 1..10000,
    default 100."""
    model = convert_body(body, BulkReplay)
    return BulkReplayRequest(_reason(model.reason), parse_filter(model.filter),
                             model.max_per_second)


def parse_cancel(body: dict[str, Any]) -> str | None:
    """The optional reason of a cancel body (:class:`CancelReplay`)."""
    return convert_body(body, CancelReplay).reason


def parse_idempotency_key(value: str | None) -> str | None:
    """The ``Idempotency-Key`` header: absent, or 1..255 printable ASCII characters."""
    if value is None:
        return None
    if not _IDEMPOTENCY_KEY_RE.match(value):
        raise InvalidRequest("Idempotency-Key must be 1..255 printable characters",
                             param="Idempotency-Key")
    return value


def request_hash(scope: str, body: dict[str, Any]) -> bytes:
    """Fingerprint of a request: its scope (the event id of a single-event replay, ``bulk``
    for a bulk replay) and its body with the keys sorted."""
    canonical = orjson.dumps({"scope": scope, "body": body}, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(canonical).digest()
