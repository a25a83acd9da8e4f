"""Helpers for the admin lists: a WHERE builder with numbered parameters, and pages.

Only the filters actually given become SQL conditions, so Postgres plans each shape of query
with the right index instead of one generic plan full of ``$1 IS NULL OR ...``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Where:
    """Accumulates ``AND``-ed conditions; ``{}`` in a condition becomes the next ``$n``."""

    conditions: list[str] = field(default_factory=list)
    args: list[Any] = field(default_factory=list)

    def add(self, condition: str, value: Any) -> None:
        """Add ``condition`` with one parameter placeholder ``{}`` bound to ``value``."""
        self.args.append(value)
        self.conditions.append(condition.format(f"${len(self.args)}"))

    def eq(self, column: str, value: Any) -> None:
        """``column = value`` when ``value`` is not None."""
        if value is not None:
            self.add(f"{column} = {{}}", value)

    def sql(self) -> str:
        """``WHERE a AND b`` or an empty string."""
        return "WHERE " + " AND ".join(self.conditions) if self.conditions else ""


@dataclass(frozen=True)
class Page:
    """One page of a list, in the contract's shape."""

    data: list[dict[str, Any]]
    has_more: bool
    next_cursor: str | None

    def to_json(self) -> dict[str, Any]:
        return {"data": self.data, "has_more": self.has_more, "next_cursor": self.next_cursor}


def page_of(rows: Sequence[Mapping[str, Any]], limit: int,
            to_json: Callable[[Mapping[str, Any]], dict[str, Any]],
            cursor_of: Callable[[Mapping[str, Any]], str]) -> Page:
    """Cut ``rows`` (fetched with ``limit + 1``) to a page; the cursor names its last row."""
    has_more = len(rows) > limit
    kept = rows[:limit]
    cursor = cursor_of(kept[-1]) if has_more and kept else None
    return Page([to_json(r) for r in kept], has_more, cursor)
