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

The reported log end can trail the records a fetch already returned: Tansu's ListOffsets and
even its fetch high watermark lagged them by hundreds of offsets for seconds after a burst. So
a partition is judged only while its consumer is not moving (its position did not advance
since the previous check: a consumer parked above a lost tail reads nothing), and such a
reading is only a *suspicion*: the partition is rewound once the suspicion has held, at every
check, for ``CONFIRM_S``. A consumer parked above a lost tail stays there for minutes.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Generic, TypeVar

P = TypeVar("P", bound=Hashable)
CONFIRM_S = 5.0   # a suspicion must hold this long before a partition is rewound


@dataclass(frozen=True, slots=True)
class Suspicion:
    """A partition seen backwards: the offset its end must get back to, and since when."""

    mark: int
    since: float


class Backwards(StrEnum):
    """Why a partition's log is judged to have gone backwards."""

    POSITION_ABOVE_END = "position_above_end"      # we read past the current end
    COMMITTED_ABOVE_END = "committed_above_end"    # an offset committed past the current end
    END_SHRANK = "end_shrank"                      # the end is below one seen earlier
    READ_BELOW_POSITION = "read_below_position"    # a fetch returned offsets we had passed
    COMMIT_VANISHED = "commit_vanished"            # the group forgot an offset we committed
    TOPIC_VANISHED = "topic_vanished"              # the topic disappeared from the metadata
    TOPIC_UNREADABLE = "topic_unreadable"          # re-created after a loss, yet unreadable
    CLUSTER_CHANGED = "cluster_changed"            # the broker answers with another cluster id
    GROUP_RESET = "group_reset"                    # the coordinator forgot the group's generation


@dataclass(frozen=True, slots=True)
class PartitionView:
    """What is known about one partition at one check.

    ``end``: the log end offset now (the next offset to be written). ``position``: the next
    offset this consumer reads (None before it knows). ``committed``: the group's committed
    offset as this process last set or read it (None when unknown). ``previous_end``: the
    highest end this process saw earlier for this partition (None when never seen).
    ``advanced``: the position moved since the previous check (the consumer is reading).
    """

    end: int
    position: int | None = None
    committed: int | None = None
    previous_end: int | None = None
    advanced: bool = False


@dataclass(frozen=True)
class RecoveryPlan(Generic[P]):
    """``rewind``: partition -> why, to be sought to its start (tracking and waiting messages
    dropped). ``reannounce``: open deliveries announced before now may have lost their
    message; ask Postgres to announce them again at once. ``suspects``: partitions seen
    backwards but not (yet) for ``CONFIRM_S`` (pass them back in at the next check)."""

    rewind: dict[P, Backwards] = field(default_factory=dict)
    reannounce: bool = False
    suspects: dict[P, Suspicion] = field(default_factory=dict)

    @property
    def needed(self) -> bool:
        """True when anything is to be done."""
        return bool(self.rewind) or self.reannounce


def judge_partition(view: PartitionView) -> Backwards | None:
    """The first reason ``view`` shows a log that went backwards, or None when it is sane (or
    its consumer is reading, which a consumer above a lost tail cannot)."""
    if view.advanced:
        return None
    if view.position is not None and view.position > view.end:
        return Backwards.POSITION_ABOVE_END
    if view.committed is not None and view.committed > view.end:
        return Backwards.COMMITTED_ABOVE_END
    if view.previous_end is not None and view.end < view.previous_end:
        return Backwards.END_SHRANK
    return None


def mark_of(view: PartitionView) -> int:
    """The highest offset we know the log once reached: what its end must get back to."""
    known = [o for o in (view.position, view.committed, view.previous_end) if o is not None]
    return max(known, default=view.end)


def plan_recovery(views: Mapping[P, PartitionView], now: float, *,
                  suspects: Mapping[P, Suspicion] | None = None,
                  read_below_position: frozenset[P] = frozenset()) -> RecoveryPlan[P]:
    """Decide the recovery for one check at time ``now`` (seconds, monotonic).

    ``views``: every partition whose end could be read. ``suspects``: the previous plan's
    suspects; a partition still judged backwards, its end still below the mark, is rewound
    once its suspicion is ``CONFIRM_S`` old; a newly judged one becomes a suspect (see the
    module docstring); one no longer judged backwards is cleared. ``read_below_position``:
    partitions whose fetches returned offsets at or below ones already read since the last
    check (the consumer reset itself after an "offset out of range": it is already at the
    start, so no rewind, but its lost tail must be re-announced). Any rewind makes the whole
    plan re-announce: Postgres does not know which partition a lost message sat on, and one
    re-announcement covers every partition.
    """
    earlier = suspects or {}
    rewind: dict[P, Backwards] = {}
    new_suspects: dict[P, Suspicion] = {}
    for partition, view in views.items():
        reason = judge_partition(view)
        if reason is None:
            continue
        suspicion = earlier.get(partition)
        if suspicion is None or view.end >= suspicion.mark:
            new_suspects[partition] = Suspicion(mark_of(view), now)
        elif now - suspicion.since >= CONFIRM_S:
            rewind[partition] = reason
        else:
            new_suspects[partition] = suspicion
    return RecoveryPlan(rewind=rewind, reannounce=bool(rewind) or bool(read_below_position),
                        suspects=new_suspects)


def vanished_commits(ours: Mapping[P, int],
                     group: Mapping[P, int | None]) -> frozenset[P]:
    """Partitions for which we committed a positive offset earlier but the group now has none:
    the broker lost its group state (restarted empty, topic re-created), so its log is gone too.
    ``ours``: the last positive offset this process committed per partition; ``group``: what
    the group's coordinator returns now (None: no committed offset). Partitions missing from
    ``group`` (not asked) are not judged."""
    return frozenset(p for p, offset in ours.items()
                     if offset > 0 and p in group and group[p] is None)


def progress_stalled(lag: int, position_sum: int, previous_sum: int | None,
                     fetching: bool) -> bool:
    """True when messages wait on the broker (``lag`` > 0), the consumer is fetching, and its
    positions did not move since the previous check: the fetcher is stuck (seen with aiokafka
    after a topic vanished and came back) and the consumer must be re-created."""
    return fetching and lag > 0 and previous_sum is not None and position_sum == previous_sum


REPAIR_WINDOW_S = 300.0   # a topic is re-created only this soon after a log loss


def cluster_changed(known: str | None, current: str | None) -> bool:
    """True when the broker now answers with a cluster id other than the one this process knew:
    a cluster wiped and formatted again (every log is gone, whatever the offsets say). Unknown
    on either side (before the first metadata answer) is no change."""
    return known is not None and current is not None and current != known


def group_reset(known: int | None, joined: int) -> bool:
    """True when a join of the consumer group got a generation no higher than one this process
    was already given: the group coordinator lost the group's state.

    A healthy coordinator bumps the generation at every rebalance and keeps it through a
    failover (Apache Kafka stores it with the committed offsets), so a member that is already
    in the group can only be handed the same or a lower generation by a coordinator that
    forgot the group: a broker with memory storage restarted (Tansu), a cluster wiped. Its
    logs went with it, including messages acknowledged to a producer moments before that no
    consumer had read yet, which no offset comparison can reveal (nothing was ever read from
    that partition, so nothing is above its new end). Unknown (no join yet, or the library
    does not say, or aiokafka's -1 for "no generation") is no reset. Generations start at 0 on
    Tansu and at 1 on Apache Kafka.
    """
    return known is not None and known >= 0 and 0 <= joined <= known


def should_recreate_topic(stuck_sessions: int, last_loss_at: float | None, now: float) -> bool:
    """Delete and re-create the topic? Only when a consumer session ended stuck (messages on
    the broker, positions frozen) and a log loss was seen within ``REPAIR_WINDOW_S``: the state
    Tansu leaves a topic in when producers wrote to it before it was re-created, which no
    fresh consumer can read either. Never otherwise: a stuck fetch without a recent loss is
    left to consumer re-creation alone (``stuck_sessions`` counts consecutive stuck sessions)."""
    return (stuck_sessions >= 1 and last_loss_at is not None
            and now - last_loss_at <= REPAIR_WINDOW_S)


def cap_commits(offsets: Mapping[P, int], ends: Mapping[P, int]) -> tuple[dict[P, int], set[P]]:
    """The offsets to commit, none above its partition's known end (a lower commit is always
    safe: at worst messages are read again), and the partitions that were capped. A partition
    whose end is unknown is committed as asked."""
    capped: dict[P, int] = {}
    lowered: set[P] = set()
    for partition, offset in offsets.items():
        end = ends.get(partition)
        if end is not None and offset > end:
            capped[partition] = end
            lowered.add(partition)
        else:
            capped[partition] = offset
    return capped, lowered


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
