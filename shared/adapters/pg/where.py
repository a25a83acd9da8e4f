"""Dynamic WHERE clauses with numbered parameters: the one builder of every query whose filters are
optional (the API lists, the ledger window, the merchant feed, the reconciliation window).

Only the filters actually given become SQL conditions, so Postgres plans each shape of query
with the right index (and prunes partitions by id bounds) instead of one generic plan full of
``$1 IS NULL OR ...``. Values are always bound as parameters, never spliced into the text.

    where = Where()
    where.eq("account_id", account_id)           # skipped when None
    where.add("id < {}", before)                 # {} becomes the next $n
    sql = f"SELECT ... FROM events {where.sql()} ORDER BY id DESC LIMIT {where.param(limit)}"
    rows = await conn.fetch(sql, *where.args)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Where:
    """Accumulates ``AND``-ed conditions; ``{}`` in a condition becomes the next ``$n``.
    ``args`` may start with parameters the surrounding statement numbers itself ($1...), and
    several builders given the same ``args`` list number their placeholders in one sequence
    (one statement with several WHERE clauses)."""

    conditions: list[str] = field(default_factory=list)
    args: list[Any] = field(default_factory=list)

    def param(self, value: Any) -> str:
        """Bind ``value`` as the next parameter; returns its placeholder (``$n``)."""
        self.args.append(value)
        return f"${len(self.args)}"

    def add(self, condition: str, value: Any) -> None:
        """Add ``condition`` with one parameter placeholder ``{}`` bound to ``value``."""
        self.conditions.append(condition.format(self.param(value)))

    def fixed(self, condition: str) -> None:
        """Add a condition without parameters."""
        self.conditions.append(condition)

    def eq(self, column: str, value: Any) -> None:
        """``column = value`` when ``value`` is not None."""
        if value is not None:
            self.add(f"{column} = {{}}", value)

    def when(self, condition: str, value: Any) -> None:
        """``condition`` (with ``{}`` for the value) when ``value`` is not None."""
        if value is not None:
            self.add(condition, value)

    def sql(self) -> str:
        """``WHERE a AND b`` or an empty string."""
        return "WHERE " + " AND ".join(self.conditions) if self.conditions else ""

    def joined(self) -> str:
        """``a AND b`` without the keyword (a ``JOIN ... ON`` condition); ``true`` when empty."""
        return " AND ".join(self.conditions) if self.conditions else "true"
