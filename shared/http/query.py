"""Query-string parameters: list limits, cursors, timestamps; unknown ones are refused."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from aiohttp import web

from shared.core.errors import InvalidRequest
from shared.core.timefmt import parse_ts

DEFAULT_LIMIT = 20
MAX_LIMIT = 100


def check_query(request: web.Request, allowed: Iterable[str]) -> None:
    """400 for a query parameter not in ``allowed`` or given twice."""
    allowed_set = set(allowed)
    for key in request.query:
        if key not in allowed_set:
            raise InvalidRequest(f"unknown query parameter {key!r}", param=key)
        if len(request.query.getall(key)) > 1:
            raise InvalidRequest(f"query parameter {key!r} given more than once", param=key)


def query_limit(request: web.Request) -> int:
    """``?limit=`` in 1..100, default 20."""
    raw = request.query.get("limit")
    if raw is None:
        return DEFAULT_LIMIT
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        raise InvalidRequest(f"limit must be an integer from 1 to {MAX_LIMIT}", param="limit")
    return int(raw)


def query_ts(request: web.Request, name: str) -> datetime | None:
    """An optional RFC 3339 timestamp parameter."""
    raw = request.query.get(name)
    if raw is None:
        return None
    try:
        return parse_ts(raw)
    except ValueError as exc:
        raise InvalidRequest(f"{name} must be an RFC 3339 timestamp", param=name) from exc


def query_str(request: web.Request, name: str, max_len: int = 256) -> str | None:
    """An optional non-empty string parameter of at most ``max_len`` characters."""
    raw = request.query.get(name)
    if raw is None:
        return None
    if not raw or len(raw) > max_len:
        raise InvalidRequest(f"{name} must be 1..{max_len} characters", param=name)
    return raw
