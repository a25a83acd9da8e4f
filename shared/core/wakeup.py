"""The wake-up after a quiet spell: delivery messages sent by Postgres NOTIFY as well as Kafka.

An idle dispatcher fetches from Kafka with a long deadline (``services/dispatcher/
fetch_wait.py``); Tansu answers such a fetch only at that deadline, so the first message after
a quiet spell would wait up to half a second in the broker. Ingest therefore also sends the
delivery messages of a batch committed at the start of a busy spell on the
``postwire_deliveries`` channel; the dispatcher that owns each message's partition takes it at
once. The Kafka copy still arrives and is claimed as usual, which skips it (the delivery is
leased or finished): Postgres decides, the notification only saves the wait. A lost or late
notification loses nothing, because the Kafka message is the record.

Pure: the channel, the payload format and when ingest sends one.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

CHANNEL = "postwire_deliveries"
QUIET_AFTER_S = 1.0        # no commit this long: the next one starts a busy spell
NOTIFY_FOR_S = 0.6         # notify this long after it (a quiet fetch waits 0.5 s)
MAX_PAYLOAD = 7900         # Postgres refuses a payload of 8000 bytes or more


class WakeupWindow:
    """When ingest notifies: every commit within ``NOTIFY_FOR_S`` after one that followed a
    quiet spell of ``QUIET_AFTER_S``. Busy ingest never notifies (a NOTIFY serialises commits
    on a global lock), so the cost is a statement at the edges of quiet spells only."""

    def __init__(self) -> None:
        self._last_commit = float("-inf")
        self._notify_until = float("-inf")

    def should_notify(self, now: float) -> bool:
        """Record a commit at ``now`` (monotonic seconds); True when it should notify."""
        if now - self._last_commit >= QUIET_AFTER_S:
            self._notify_until = now + NOTIFY_FOR_S
        self._last_commit = now
        return now <= self._notify_until


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
