"""Noticing a Kafka log that went backwards, and what to do about it. Pure: no I/O.

A broker can lose the tail of a partition, or all of it: a broker with memory storage restarted
empty (the embedded Tansu), an unclean leader election, a topic deleted and re-created, a cluster
wiped and started again. Its log end then lies below offsets we read or committed, and:

- a consumer positioned above the new end reads nothing until the log grows past that point
  (Apache Kafka answers "offset out of range" and the consumer resets; Tansu just returns
  nothing), and an offset committed above the end would park every later member there too;
- the messages of the lost tail are gone, so the deliveries they announced only move again
  when Postgres re-announces them.

:func:`plan_recovery` compares, per partition, the log end now with what this process knows
(its position, the offset it last committed, the highest end it saw earlier, in any consumer
session) and says which partitions to rewind to their start and whether to re-announce open
deliveries from Postgres. Re-reading from the start is harmless: every message is claimed in
Postgres before anything is sent. :func:`cap_commits` keeps commits at or below the log end.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TypeVar

P = TypeVar("P", bound=Hashable)


class Backwards(StrEnum):
    """Why a partition's log is judged to have gone backwards."""

    POSITION_ABOVE_END = "position_above_end"      # we read past the current end
    COMMITTED_ABOVE_END = "committed_above_end"    # an offset committed past the current end
    END_SHRANK = "end_shrank"                      # the end is below one seen earlier
    READ_BELOW_POSITION = "read_below_position"    # a fetch returned offsets we had passed


@dataclass(frozen=True, slots=True)
class PartitionView:
    """What is known about one partition at one check.

    ``end``: the log end offset now (the next offset to be written). ``position``: the next
    offset this consumer reads (None before it knows). ``committed``: the group's committed
    offset as this process last set or read it (None when unknown). ``previous_end``: the
    highest end this process saw earlier for this partition (None when never seen).
    """

    end: int
    position: int | None = None
    committed: int | None = None
    previous_end: int | None = None


@dataclass(frozen=True)
class RecoveryPlan:
    """``rewind``: partition -> why, to be sought to its start (tracking and waiting messages
    dropped). ``reannounce``: open deliveries announced before now may have lost their
    message; ask Postgres to announce them again at once."""

    rewind: dict[Hashable, Backwards] = field(default_factory=dict)
    reannounce: bool = False

    @property
    def needed(self) -> bool:
        """True when anything is to be done."""
        return bool(self.rewind) or self.reannounce


def judge_partition(view: PartitionView) -> Backwards | None:
    """The first reason ``view`` shows a log that went backwards, or None when it is sane."""
    if view.position is not None and view.position > view.end:
        return Backwards.POSITION_ABOVE_END
    if view.committed is not None and view.committed > view.end:
        return Backwards.COMMITTED_ABOVE_END
    if view.previous_end is not None and view.end < view.previous_end:
        return Backwards.END_SHRANK
    return None


def plan_recovery(views: Mapping[P, PartitionView], *,
                  read_below_position: frozenset[P] = frozenset()) -> RecoveryPlan:
    """Decide the recovery for one check.

    ``views``: every partition whose end could be read. ``read_below_position``: partitions
    whose fetches returned offsets at or below ones already read since the last check (the
    consumer reset itself after an "offset out of range": already at the start, so no rewind
    is needed, but its lost tail must be re-announced). Any partition that went backwards makes
    the whole plan re-announce: Postgres does not know which partition a delivery's lost
    message sat on, and one re-announcement covers every partition.
    """
    rewind: dict[Hashable, Backwards] = {}
    for partition, view in views.items():
        reason = judge_partition(view)
        if reason is not None:
            rewind[partition] = reason
    return RecoveryPlan(rewind=rewind, reannounce=bool(rewind) or bool(read_below_position))


def cap_commits(offsets: Mapping[P, int], ends: Mapping[P, int]) -> tuple[dict[P, int], set[P]]:
    """Split the offsets to commit into those at or below their partition's known end, and the
    partitions held back because their offset lies above it (a log that went backwards: the
    next check rewinds them). A partition whose end is unknown is committed as asked."""
    allowed: dict[P, int] = {}
    held: set[P] = set()
    for partition, offset in offsets.items():
        end = ends.get(partition)
        if end is not None and offset > end:
            held.add(partition)
        else:
            allowed[partition] = offset
    return allowed, held


def merge_seen_ends(seen: Mapping[P, int], ends: Mapping[P, int],
                    rewound: set[P]) -> dict[P, int]:
    """The highest end seen per partition after a check: the larger of before and now, except
    for rewound partitions, which start again from their current end."""
    merged = dict(seen)
    for partition, end in ends.items():
        if partition in rewound:
            merged[partition] = end
        else:
            merged[partition] = max(end, merged.get(partition, end))
    return merged
