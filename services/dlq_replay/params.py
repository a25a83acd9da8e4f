"""Path and query parameters of the admin API's routes, checked in the contract's way.

A malformed id in the path is a 404 like an unknown one; a malformed filter in the query is a
400 naming it. ``PAGING`` are the query names every list accepts; ``MAX_BODY_BYTES`` bounds
every JSON body the admin API reads.
"""

from __future__ import annotations

import re

from aiohttp import web

from shared.core.errors import InvalidRequest, NotFound
from shared.core.ids import is_valid_id

ACCOUNT_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
TYPE_RE = re.compile(r"[A-Za-z0-9_.-]{1,128}")
PAGING = ("limit", "cursor")
MAX_BODY_BYTES = 256 * 1024


def path_id(request: web.Request, name: str, prefix: str, noun: str) -> str:
    """The ``{name}`` path segment; a malformed id is a 404 like an unknown one."""
    value = request.match_info[name]
    if not is_valid_id(value, prefix):
        raise NotFound(f"no {noun} {value}", param=name)
    return value


def query_match(request: web.Request, name: str, pattern: re.Pattern[str],
                what: str) -> str | None:
    """An optional filter that must match ``pattern`` in full (400 naming it otherwise)."""
    value = request.query.get(name)
    if value is not None and not pattern.fullmatch(value):
        raise InvalidRequest(f"{name} must be {what}", param=name)
    return value


def query_id(request: web.Request, name: str, prefix: str, what: str) -> str | None:
    """An optional id filter; a malformed id is a 400 naming it."""
    value = request.query.get(name)
    if value is not None and not is_valid_id(value, prefix):
        raise InvalidRequest(f"{name} must be {what}", param=name)
    return value
