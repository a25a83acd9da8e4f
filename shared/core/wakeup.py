"""The low-rate fast path: delivery messages carried by Postgres, with Kafka as the fallback.

While its traffic is low (under ``NOTIFY_BELOW_PER_S`` deliveries a second), ingest notifies
the delivery messages of each batch on ``CHANNEL`` from inside the batch's own transaction
(``pg_notify`` in the write statement: delivered at commit, never before, and never for a
batch that rolled back), and does not publish them: their outbox rows stay. The dispatcher
that owns a message's partition claims it at once and deletes its outbox row in the claim
transaction, once the claim's action for it is durable in Postgres. A message nobody took
(notification lost, no owner during a rebalance, no dispatcher running, the claim failed or
only deferred it) keeps its row, which the outbox relay publishes after its minimum age: the
message then arrives by Kafka as before. Busy ingest does not notify (a NOTIFY takes a global
lock at commit, and at high rates the Kafka path is fast and batched anyway).

The payload names outbox rows, which its receiver deletes, so it travels on a channel of its
own (``postwire_wakeups``): a process of the previous version, whose payload on
``postwire_deliveries`` had no row id, never reads this format, nor this one that format.

Pure: the channel, the payload format, which partition a message belongs to, and when ingest
notifies.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

from shared.core.per_second import PerSecondCount

CHANNEL = "postwire_wakeups"
NOTIFY_BELOW_PER_S = 500   # deliveries a second (this ingest process) up to which it notifies
MAX_PAYLOAD = 7900         # Postgres refuses a payload of 8000 bytes or more


class WakeupWindow:
    """When ingest notifies: while this process commits fewer than ``NOTIFY_BELOW_PER_S``
    deliveries a second, counted over whole seconds (the current one and the one before, so
    a burst is seen at once and a second of low traffic is enough to start again)."""

    def __init__(self) -> None:
        self._committed = PerSecondCount()

    def should_notify(self, now: float, deliveries: int) -> bool:
        """Record a commit of ``deliveries`` at ``now`` (monotonic seconds); True when its
        messages should be notified."""
        return self._committed.add(now, deliveries) <= NOTIFY_BELOW_PER_S


def partition_of(key: bytes, partitions: int) -> int:
    """The partition every Postwire producer sends ``key`` to (``partitioning.py``)."""
    return zlib.crc32(key) % partitions


def encode_payload(rows: Sequence[tuple[int, bytes]]) -> tuple[str, int] | None:
    """The payload for outbox ``rows`` given as ``(outbox id, value)`` in id order: one
    ``id<TAB>value`` line each, as many as fit in ``MAX_PAYLOAD`` bytes; returns it with how
    many rows it holds (a prefix of ``rows``), or None when not even the first fits. Values are
    compact JSON (no raw newline or tab). Ingest renders the same text in SQL
    (``services/ingest/events_repo.py``; an integration test compares them)."""
    lines: list[str] = []
    size = 0
    for outbox_id, value in rows:
        line = f"{outbox_id}\t{value.decode()}"
        length = len(line.encode()) + 1  # the limit is in bytes; a newline between lines
        if size + length > MAX_PAYLOAD:
            break
        lines.append(line)
        size += length
    return ("\n".join(lines), len(lines)) if lines else None


def decode_payload(payload: str) -> list[tuple[int, bytes]]:
    """``(outbox id, value)`` pairs of a payload; malformed lines are left out."""
    out: list[tuple[int, bytes]] = []
    for line in payload.split("\n"):
        outbox_id, sep, value = line.partition("\t")
        if sep and value and outbox_id.isascii() and outbox_id.isdigit():
            out.append((int(outbox_id), value.encode()))
    return out
