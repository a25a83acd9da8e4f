"""The platform's ledger: accepted events against what became of their deliveries. Pure.

For a window of acceptance time (``created_at``; ``from`` inclusive, ``to`` exclusive):

- ``events_accepted``: events stored;
- ``deliveries_created``: the sum of their ``delivery_count`` (what each 202 promised);
- ``deliveries_by_status``: their delivery rows by status, ``open`` = pending + retrying.

Checks, each reported with whether it holds:

- ``deliveries_balance``: deliveries_created = succeeded + dead + cancelled + open. Fails when a
  promised delivery row is missing, or a row exists that no event accounted for.
- ``dead_letters_recorded``: every dead delivery has its dead-letter record.

The window is mapped onto id ranges (ids start with their creation time in milliseconds, see
:mod:`shared.core.ids`), widened by :data:`ID_TIME_MARGIN` on each side because an id's time
and its row's ``created_at`` are read from the clock a few milliseconds apart; ``created_at``
then decides exactly. So a window costs an index range scan, not a table scan.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from shared.core.delivery_status import OPEN_STATUSES, STATUSES
from shared.core.timefmt import format_ts

ID_TIME_MARGIN = timedelta(minutes=5)
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def id_time_prefix(at: datetime) -> str:
    """The first 10 characters of a ULID made at ``at`` (48-bit Unix milliseconds)."""
    ms = max(0, int(at.timestamp() * 1000))
    return "".join(_CROCKFORD[(ms >> shift) & 31] for shift in range(45, -5, -5))


def id_bounds(prefix: str, since: datetime | None,
              until: datetime | None) -> tuple[str | None, str | None]:
    """``(lowest, above)`` ids of ``prefix`` whose time can fall in ``[since, until)``,
    widened by :data:`ID_TIME_MARGIN`; None where the window is open."""
    low = None if since is None else f"{prefix}_{id_time_prefix(since - ID_TIME_MARGIN)}"
    high = None if until is None else f"{prefix}_{id_time_prefix(until + ID_TIME_MARGIN)}"
    return low, high


@dataclass(frozen=True, slots=True)
class OldestOpen:
    """The open delivery created first (in the window), and how old it is."""

    delivery_id: str
    event_id: str
    endpoint_id: str
    status: str
    created_at: datetime
    age_s: float

    def to_json(self) -> dict[str, Any]:
        return {"delivery_id": self.delivery_id, "event_id": self.event_id,
                "endpoint_id": self.endpoint_id, "status": self.status,
                "created_at": format_ts(self.created_at), "age_s": round(self.age_s, 3)}


@dataclass(frozen=True, slots=True)
class Check:
    """One invariant: its name, whether it holds, and the figures it compared."""

    name: str
    holds: bool
    detail: str

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "holds": self.holds, "detail": self.detail}


@dataclass(frozen=True, slots=True)
class Ledger:
    """The figures of one window, read from one snapshot."""

    since: datetime | None
    until: datetime | None
    as_of: datetime
    events_accepted: int
    deliveries_created: int
    by_status: dict[str, int]
    dead_without_dead_letter: int
    oldest_open: OldestOpen | None = None
    checks: list[Check] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "checks", evaluate(self))

    @property
    def open(self) -> int:
        return sum(self.by_status.get(s, 0) for s in OPEN_STATUSES)

    @property
    def accounted(self) -> int:
        """succeeded + dead + cancelled + open."""
        return sum(self.by_status.get(s, 0) for s in STATUSES)

    @property
    def balanced(self) -> bool:
        return all(check.holds for check in self.checks)

    def to_json(self) -> dict[str, Any]:
        """The ``GET /admin/v1/ledger`` body."""
        return {
            "from": format_ts(self.since), "to": format_ts(self.until),
            "as_of": format_ts(self.as_of), "events_accepted": self.events_accepted,
            "deliveries_created": self.deliveries_created,
            "deliveries_by_status": {**{s: self.by_status.get(s, 0) for s in STATUSES},
                                     "open": self.open},
            "balanced": self.balanced, "checks": [c.to_json() for c in self.checks],
            "oldest_open_delivery": None if self.oldest_open is None
            else self.oldest_open.to_json(),
        }


def evaluate(ledger: Ledger) -> list[Check]:
    """The invariants of the module docstring, in order."""
    s = ledger.by_status
    balance = Check(
        "deliveries_balance", ledger.deliveries_created == ledger.accounted,
        f"deliveries_created {ledger.deliveries_created} = succeeded {s.get('succeeded', 0)}"
        f" + dead {s.get('dead', 0)} + cancelled {s.get('cancelled', 0)} + open {ledger.open}"
        f" ({ledger.accounted})")
    dead = Check(
        "dead_letters_recorded", ledger.dead_without_dead_letter == 0,
        f"{ledger.dead_without_dead_letter} dead deliveries without a dead-letter record")
    return [balance, dead]
