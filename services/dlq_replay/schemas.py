"""Request bodies of the admin API, validated into frozen dataclasses (pure; no I/O).

Every parser raises :class:`InvalidRequest` naming the offending field; unknown fields are
refused. The parsed forms are what the handlers act on and what the audit log records.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from shared.core.errors import InvalidRequest
from shared.core.ids import is_valid_id
from shared.core.timefmt import format_ts, parse_ts

MAX_REASON_CHARS = 1000
MAX_ENDPOINT_IDS = 1000
MAX_RATE = 10000
DEFAULT_RATE = 100
_ACCOUNT_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_TYPE_RE = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")
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


def _reason(body: dict[str, Any]) -> str:
    reason = body.get("reason")
    if not isinstance(reason, str) or not reason.strip():
        raise InvalidRequest("reason is required: say why you replay", param="reason")
    if len(reason) > MAX_REASON_CHARS:
        raise InvalidRequest(f"reason must be at most {MAX_REASON_CHARS} characters",
                             param="reason")
    return reason.strip()


def _reject_unknown(obj: dict[str, Any], allowed: frozenset[str], where: str = "") -> None:
    for key in obj:
        if key not in allowed:
            raise InvalidRequest(f"unknown field {where}{key!r}", param=f"{where}{key}")


def _endpoint_ids(value: Any) -> tuple[str, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not value or len(value) > MAX_ENDPOINT_IDS:
        raise InvalidRequest(f"endpoint_ids must be a list of 1..{MAX_ENDPOINT_IDS} endpoint ids",
                             param="endpoint_ids")
    for item in value:
        if not isinstance(item, str) or not is_valid_id(item, "ep"):
            raise InvalidRequest(f"endpoint_ids: {item!r} is not an endpoint id",
                                 param="endpoint_ids")
    return tuple(dict.fromkeys(value))


def parse_event_replay(body: dict[str, Any]) -> EventReplayRequest:
    """Validate a single-event replay body."""
    _reject_unknown(body, frozenset({"reason", "endpoint_ids", "include_succeeded"}))
    include = body.get("include_succeeded", False)
    if not isinstance(include, bool):
        raise InvalidRequest("include_succeeded must be true or false", param="include_succeeded")
    return EventReplayRequest(_reason(body), _endpoint_ids(body.get("endpoint_ids")), include)


def _optional_str(obj: dict[str, Any], name: str, pattern: re.Pattern[str],
                  what: str) -> str | None:
    value = obj.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not pattern.match(value):
        raise InvalidRequest(f"filter.{name} must be {what}", param=f"filter.{name}")
    return value


def _optional_ts(obj: dict[str, Any], name: str) -> datetime | None:
    value = obj.get(name)
    if value is None:
        return None
    try:
        return parse_ts(value)
    except ValueError as exc:
        raise InvalidRequest(f"filter.{name} must be an RFC 3339 timestamp",
                             param=f"filter.{name}") from exc


def parse_filter(raw: Any) -> ReplayFilter:
    """Validate a bulk replay filter (an object; every field optional)."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise InvalidRequest("filter must be an object", param="filter")
    _reject_unknown(raw, frozenset({"endpoint_id", "account_id", "type", "since", "until"}),
                    "filter.")
    endpoint_id = raw.get("endpoint_id")
    if endpoint_id is not None and (not isinstance(endpoint_id, str)
                                    or not is_valid_id(endpoint_id, "ep")):
        raise InvalidRequest("filter.endpoint_id must be an endpoint id",
                             param="filter.endpoint_id")
    result = ReplayFilter(
        endpoint_id=endpoint_id,
        account_id=_optional_str(raw, "account_id", _ACCOUNT_RE, "1..64 of [A-Za-z0-9_-]"),
        type=_optional_str(raw, "type", _TYPE_RE, "1..128 of [A-Za-z0-9_.-]"),
        since=_optional_ts(raw, "since"),
        until=_optional_ts(raw, "until"),
    )
    if result.since and result.until and result.since >= result.until:
        raise InvalidRequest("filter.since must be before filter.until", param="filter.since")
    return result


def parse_bulk_replay(body: dict[str, Any]) -> BulkReplayRequest:
    """Validate a bulk replay body; ``max_per_second`` is 1..10000, default 100."""
    _reject_unknown(body, frozenset({"reason", "filter", "max_per_second"}))
    rate = body.get("max_per_second", DEFAULT_RATE)
    if isinstance(rate, bool) or not isinstance(rate, int) or not 1 <= rate <= MAX_RATE:
        raise InvalidRequest(f"max_per_second must be an integer from 1 to {MAX_RATE}",
                             param="max_per_second")
    return BulkReplayRequest(_reason(body), parse_filter(body.get("filter")), rate)


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
