"""Pages of a list in the contract's shape: ``{"data", "has_more", "next_cursor"}``. Pure.

Every list of every API pages the same way: fetch ``limit + 1`` rows in the list's order
(keyset: the cursor names the last row served, see :mod:`shared.core.cursor`), serve the first
``limit``, and there is more exactly when the extra row came back; the next cursor then names
the last row served.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Page:
    """One page of a list, in the contract's shape."""

    data: list[Any]
    has_more: bool
    next_cursor: str | None

    def to_json(self) -> dict[str, Any]:
        return {"data": self.data, "has_more": self.has_more, "next_cursor": self.next_cursor}


def page_of(rows: Sequence[Mapping[str, Any]], limit: int,
            to_json: Callable[[Mapping[str, Any]], Any],
            cursor_of: Callable[[Mapping[str, Any]], str]) -> Page:
    """Cut ``rows`` (fetched with ``limit + 1``) to a page; the cursor names its last row."""
    has_more = len(rows) > limit
    kept = rows[:limit]
    cursor = cursor_of(kept[-1]) if has_more and kept else None
    return Page([to_json(r) for r in kept], has_more, cursor)
