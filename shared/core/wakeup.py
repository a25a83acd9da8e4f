"""The low-rate fast path: delivery messages sent by Postgres NOTIFY as well as by Kafka.

While its traffic is low (under ``NOTIFY_BELOW_PER_S`` deliveries a second), ingest also sends
the delivery messages of each committed batch on the ``postwire_deliveries`` channel; the
dispatcher that owns each message's partition takes it at once, instead of waiting for the
outbox publish, the broker and a fetch (on Tansu a fetch is answered only at its deadline, and
an idle dispatcher fetches with a long one: ``services/dispatcher/fetch_wait.py``). The Kafka
copy still arrives: it is the record, it moves the offsets, and it is handled on its own when
the notification was lost. Busy ingest does not notify (a NOTIFY takes a global lock at commit,
and at high rates the Kafka path is fast anyway).

Pure: the channel, the payload format and when ingest sends one.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

CHANNEL = "postwire_deliveries"
NOTIFY_BELOW_PER_S = 500   # deliveries a second (this ingest process) up to which it notifies
MAX_PAYLOAD = 7900         # Postgres refuses a payload of 8000 bytes or more


class WakeupWindow:
    """When ingest notifies: while this process commits fewer than ``NOTIFY_BELOW_PER_S``
    deliveries a second, counted over whole seconds (the current one and the one before, so
    a burst is seen at once and a second of low traffic is enough to start again)."""

    def __init__(self) -> None:
        self._second = float("-inf")
        self._this_second = 0
        self._last_second = 0

    def should_notify(self, now: float, deliveries: int) -> bool:
        """Record a commit of ``deliveries`` at ``now`` (monotonic seconds); True when its
        messages should be notified."""
        second = float(int(now))
        if second != self._second:
            self._last_second = self._this_second if second - self._second == 1 else 0
            self._second, self._this_second = second, 0
        self._this_second += deliveries
        return max(self._this_second, self._last_second) <= NOTIFY_BELOW_PER_S


def partition_of(key: bytes, partitions: int) -> int:
    """The partition every Postwire producer sends ``key`` to (``partitioning.py``)."""
    return zlib.crc32(key) % partitions


def encode_payload(messages: Sequence[tuple[bytes, bytes]], partitions: int) -> str | None:
    """``partition<TAB>value`` lines for ``(key, value)`` messages, as many as fit in a
    payload; None when none does. Values are compact JSON (no newline, no tab)."""
    lines: list[str] = []
    size = 0
    for key, value in messages:
        line = f"{partition_of(key, partitions)}\t{value.decode()}"
        length = len(line.encode()) + 1  # the limit is in bytes; a newline between lines
        if size + length > MAX_PAYLOAD:
            break
        lines.append(line)
        size += length
    return "\n".join(lines) if lines else None


def decode_payload(payload: str) -> list[tuple[int, bytes]]:
    """``(partition, value)`` pairs of a payload; malformed lines are left out."""
    out: list[tuple[int, bytes]] = []
    for line in payload.split("\n"):
        partition, sep, value = line.partition("\t")
        if sep and partition.isdigit():
            out.append((int(partition), value.encode()))
    return out
