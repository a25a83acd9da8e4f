"""The delivery lifecycle's statuses, and which of them are open. Pure.

A delivery is ``pending`` until its first attempt, ``retrying`` between failed attempts, and
ends ``succeeded``, ``dead`` (retries exhausted, non-retryable answer, endpoint gone or
disabled) or ``cancelled``. The *open* statuses, ``pending`` and ``retrying``, are the ones a
dispatcher may still claim, a replay refuses to requeue (already pending), retention keeps a
day for, and the ledger counts as in flight. Everything that asks "is it still open?" uses
:data:`OPEN_STATUSES` in Python and :data:`OPEN_SQL` in SQL (``status IN {OPEN_SQL}``), so
the set is written once. The values are the contract's and the ``deliveries.status`` column's.
"""

from __future__ import annotations

from enum import StrEnum


class DeliveryStatus(StrEnum):
    """A delivery's status as stored and as the API shows it."""

    PENDING = "pending"
    RETRYING = "retrying"
    SUCCEEDED = "succeeded"
    DEAD = "dead"
    CANCELLED = "cancelled"

    @property
    def is_open(self) -> bool:
        """True while the delivery may still be attempted."""
        return self in OPEN_STATUSES


#: Every status, in lifecycle order.
STATUSES: tuple[str, ...] = tuple(status.value for status in DeliveryStatus)
#: The statuses of a delivery that may still be attempted, in lifecycle order.
OPEN_STATUSES: tuple[str, ...] = (DeliveryStatus.PENDING.value, DeliveryStatus.RETRYING.value)
#: ``OPEN_STATUSES`` as an SQL list for ``status IN ...``: ``('pending', 'retrying')``.
OPEN_SQL = "(" + ", ".join(f"'{status}'" for status in OPEN_STATUSES) + ")"
