"""The admin lists' WHERE builder with numbered parameters (pages: :mod:`shared.core.paging`).

Only the filters actually given become SQL conditions, so Postgres plans each shape of query
with the right index instead of one generic plan full of ``$1 IS NULL OR ...``.
"""

from __future__ import annotations

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
