"""Values passed between the dispatcher's stages (consume -> gate -> claim -> send -> record).

Pure data; no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from services.dispatcher.offsets import Ticket
from shared.core.decision import AttemptResult, Decision
from shared.core.delivery_message import DeliveryMessage


@dataclass(frozen=True, slots=True)
class Pending:
    """A consumed message waiting for its claim.

    ``park_s`` set: do not attempt now, park the delivery in Postgres that many seconds ahead
    (its endpoint has more work waiting in this process than it can take).
    ``outbox_id`` set: the message came on the wake-up channel and its outbox row is still
    there; the claim transaction that settles or leases the delivery deletes it (a deferral
    keeps it, so the relay publishes it if this process never gets further).
    """

    ticket: Ticket
    message: DeliveryMessage
    park_s: float | None = None
    queued_at: float = 0.0          # monotonic time it joined its endpoint's queue
    outbox_id: int | None = None


@dataclass(frozen=True, slots=True)
class Claimed:
    """A delivery this process holds a lease on and must attempt (or release).

    ``send_at_s`` is when to send (a reserved rate-limit slot), on this process's monotonic
    clock, anchored when the claim read the database clock (so the time the claim took to
    commit and the attempt task to start does not shift the slot). ``send_by_s`` (same clock)
    is the latest moment a rate-limited send may still leave; a task that cannot send by then
    gives the slot up (:mod:`services.dispatcher.rate_slots`); None without a rate limit.
    ``secrets`` are the HMAC keys to sign with, current first.
    """

    pending: Pending
    delivery_id: str
    event_id: str
    endpoint_id: str
    account_id: str
    event_type: str
    ordering_key: str | None
    url: str
    secrets: tuple[bytes, ...]
    body: bytes
    event_created_at: datetime
    attempt_count: int
    round_attempt_count: int
    send_at_s: float
    probe: bool
    send_by_s: float | None = None


@dataclass(frozen=True, slots=True)
class Finished:
    """An attempt that happened and the decision about it, waiting to be recorded."""

    claimed: Claimed
    result: AttemptResult
    decision: Decision
    started_at: datetime
