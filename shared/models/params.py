"""Parameter types the APIs share: paging, time windows, the Idempotency-Key header."""

from __future__ import annotations

from typing import Annotated

import msgspec

from shared.http.openapi import Param
from shared.http.query import DEFAULT_LIMIT, MAX_LIMIT
from shared.models.common import Timestamp

Limit = Annotated[int, msgspec.Meta(ge=1, le=MAX_LIMIT)]
Cursor = Annotated[str, msgspec.Meta(min_length=1, max_length=1024)]
IdempotencyKeyHeader = Annotated[str, msgspec.Meta(
    min_length=1, max_length=255, pattern=r"^[\x20-\x7e]+$")]

LIMIT = Param("limit", "query", Limit, f"Items per page, 1..{MAX_LIMIT} (default {DEFAULT_LIMIT}).")
CURSOR = Param("cursor", "query", Cursor, "The next_cursor of the previous page.")
PAGING = (LIMIT, CURSOR)


def since_until(what: str) -> tuple[Param, Param]:
    """``since`` (inclusive) and ``until`` (exclusive) on ``what``."""
    return (Param("since", "query", Timestamp, f"Only items with {what} at or after this."),
            Param("until", "query", Timestamp, f"Only items with {what} before this."))


def idempotency_header(meaning: str) -> Param:
    """The optional ``Idempotency-Key`` header."""
    return Param("Idempotency-Key", "header", IdempotencyKeyHeader, meaning)
