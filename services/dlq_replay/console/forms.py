"""Reading HTML form fields and query parameters of the browser pages.

Empty fields mean "not given". Every parser raises :class:`InvalidRequest` naming the field,
which the guard shows as an error page. Times come from ``<input type="datetime-local">``
(no zone: taken as UTC, as the pages say) or as RFC 3339.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from shared.core.errors import InvalidRequest
from shared.core.timefmt import parse_ts


def text(source: Mapping[str, Any], name: str, max_len: int = 256) -> str | None:
    """A trimmed string field, None when absent or empty."""
    value = source.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidRequest(f"{name} must be text", param=name)
    value = value.strip()
    if not value:
        return None
    if len(value) > max_len:
        raise InvalidRequest(f"{name} must be at most {max_len} characters", param=name)
    return value


def required(source: Mapping[str, Any], name: str, max_len: int = 1000) -> str:
    """A non-empty string field."""
    value = text(source, name, max_len)
    if value is None:
        raise InvalidRequest(f"{name} is required", param=name)
    return value


def integer(source: Mapping[str, Any], name: str, default: int, lo: int, hi: int) -> int:
    """An integer field in ``lo..hi`` (``default`` when empty)."""
    value = text(source, name, 20)
    if value is None:
        return default
    if not value.lstrip("-").isdigit() or not lo <= int(value) <= hi:
        raise InvalidRequest(f"{name} must be an integer from {lo} to {hi}", param=name)
    return int(value)


def timestamp(source: Mapping[str, Any], name: str) -> datetime | None:
    """An RFC 3339 or ``datetime-local`` (UTC) field."""
    value = text(source, name, 64)
    if value is None:
        return None
    try:
        if "Z" in value.upper() or "+" in value or value.count("-") > 2:
            return parse_ts(value)
        return datetime.fromisoformat(value).replace(tzinfo=UTC)
    except ValueError as exc:
        raise InvalidRequest(f"{name} must be a date and time (UTC)", param=name) from exc


def event_types(value: str | None) -> list[str]:
    """Event type patterns typed as a comma- or whitespace-separated list (validated later)."""
    if value is None:
        return []
    return [part for part in value.replace(",", " ").split() if part]
