"""The lost-log recovery plan: which partitions went backwards, what to rewind, what to
re-announce, and that no commit goes above a partition's end."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from services.dispatcher.offsets import OffsetTracker
from services.dispatcher.recovery import (
    CONFIRM_S,
    Backwards,
    PartitionView,
    cap_commits,
    cluster_changed,
    group_reset,
    judge_partition,
    merge_seen_ends,
    plan_recovery,
    progress_stalled,
    should_recreate_topic,
    vanished_commits,
)


def test_a_sane_partition_needs_nothing() -> None:
    views = {"p0": PartitionView(end=300, position=274, committed=270, previous_end=290),
             "p1": PartitionView(end=0), "p2": PartitionView(end=5, position=5, committed=5)}
    plan = plan_recovery(views, 0.0)
    assert not plan.needed and plan.rewind == {} and not plan.reannounce


def test_position_above_end_is_suspected_then_rewound_and_reannounced() -> None:
    """The issue's case: committed 274 on a partition whose new end is 234, and the consumer
    parked there reading nothing."""
    views = {"p3": PartitionView(end=234, position=274, committed=274),
             "p4": PartitionView(end=10, position=10)}
    first = plan_recovery(views, 100.0)
    assert first.rewind == {} and not first.reannounce
    assert first.suspects["p3"].mark == 274 and set(first.suspects) == {"p3"}
    early = plan_recovery(views, 100.0 + CONFIRM_S / 2, suspects=first.suspects)
    assert not early.rewind and early.suspects == first.suspects
    later = {"p3": PartitionView(end=240, position=274, committed=274), "p4": views["p4"]}
    plan = plan_recovery(later, 100.0 + CONFIRM_S, suspects=early.suspects)
    assert plan.rewind == {"p3": Backwards.POSITION_ABOVE_END}
    assert plan.reannounce and plan.needed


def test_a_lagging_log_end_is_not_a_loss() -> None:
    """The reported end may trail what a fetch returned; a consumer that is still reading is
    not judged, and a suspicion is dropped once the end passes the mark."""
    reading = plan_recovery({"p0": PartitionView(end=84, position=186, advanced=True)}, 0.0)
    assert not reading.needed and reading.suspects == {}
    first = plan_recovery({"p0": PartitionView(end=84, position=186)}, 0.0)
    assert first.suspects["p0"].mark == 186
    caught_up = plan_recovery({"p0": PartitionView(end=190, position=186)}, CONFIRM_S,
                              suspects=first.suspects)
    assert not caught_up.needed and caught_up.suspects == {}
    moving = plan_recovery({"p0": PartitionView(end=84, position=200, advanced=True)},
                           CONFIRM_S, suspects=first.suspects)
    assert not moving.needed and moving.suspects == {}


def test_each_reason_is_recognised() -> None:
    assert judge_partition(PartitionView(end=5, position=6)) is Backwards.POSITION_ABOVE_END
    assert judge_partition(PartitionView(end=5, position=5, committed=9)) \
        is Backwards.COMMITTED_ABOVE_END
    assert judge_partition(PartitionView(end=5, position=0, previous_end=40)) \
        is Backwards.END_SHRANK
    assert judge_partition(PartitionView(end=40, position=0, previous_end=40)) is None


def test_a_log_reset_seen_by_the_fetcher_reannounces_without_rewinding() -> None:
    plan = plan_recovery({"p0": PartitionView(end=3, position=3)}, 0.0,
                         read_below_position=frozenset({"p0"}))
    assert plan.rewind == {} and plan.reannounce


def test_commits_above_the_end_are_lowered_to_it() -> None:
    allowed, lowered = cap_commits({"a": 10, "b": 274, "c": 7}, {"a": 10, "b": 234})
    assert allowed == {"a": 10, "b": 234, "c": 7}  # c: end unknown, committed as asked
    assert lowered == {"b"}


def test_seen_ends_only_grow_except_after_a_rewind() -> None:
    merged = merge_seen_ends({"a": 50, "b": 80}, {"a": 40, "b": 90, "c": 3}, rewound={"a"})
    assert merged == {"a": 40, "b": 90, "c": 3}
    assert merge_seen_ends({"a": 50}, {"a": 40}, rewound=set()) == {"a": 50}


@given(st.lists(st.tuples(st.integers(0, 1000), st.integers(0, 1000)), min_size=1, max_size=20))
def test_capped_commits_never_exceed_their_end(pairs: list[tuple[int, int]]) -> None:
    offsets = {i: off for i, (off, _) in enumerate(pairs)}
    ends = {i: end for i, (_, end) in enumerate(pairs)}
    allowed, lowered = cap_commits(offsets, ends)
    assert all(off <= ends[p] for p, off in allowed.items())
    assert set(allowed) == set(offsets)
    assert lowered == {p for p, off in offsets.items() if off > ends[p]}


@given(end=st.integers(0, 10_000), position=st.integers(0, 10_000),
       previous=st.integers(0, 10_000), advanced=st.booleans())
def test_a_rewind_is_planned_exactly_when_a_still_consumer_stays_above_the_end(
        end: int, position: int, previous: int, advanced: bool) -> None:
    view = PartitionView(end=end, position=position, previous_end=previous, advanced=advanced)
    backwards = (position > end or previous > end) and not advanced
    first = plan_recovery({"p": view}, 0.0)
    assert not first.rewind and ("p" in first.suspects) == backwards
    second = plan_recovery({"p": view}, CONFIRM_S, suspects=first.suspects)
    assert ("p" in second.rewind) == backwards
    assert second.reannounce == backwards


def test_vanished_commits_and_stalled_progress() -> None:
    assert vanished_commits({"a": 10, "b": 5, "c": 0, "d": 7},
                            {"a": None, "b": 5, "c": None}) == frozenset({"a"})
    assert progress_stalled(lag=5, position_sum=10, previous_sum=10, fetching=True)
    assert not progress_stalled(lag=5, position_sum=11, previous_sum=10, fetching=True)
    assert not progress_stalled(lag=0, position_sum=10, previous_sum=10, fetching=True)
    assert not progress_stalled(lag=5, position_sum=10, previous_sum=10, fetching=False)
    assert not progress_stalled(lag=5, position_sum=10, previous_sum=None, fetching=True)


def test_a_topic_is_recreated_only_when_stuck_soon_after_a_loss() -> None:
    assert should_recreate_topic(1, last_loss_at=100.0, now=130.0)
    assert not should_recreate_topic(0, last_loss_at=100.0, now=130.0)
    assert not should_recreate_topic(1, last_loss_at=None, now=130.0)
    assert not should_recreate_topic(3, last_loss_at=100.0, now=100.0 + 3600)


def test_tracker_reports_partitions_whose_log_went_back_once() -> None:
    tracker = OffsetTracker()
    old = tracker.track("p0", 270)
    tracker.track("p1", 5)
    assert tracker.take_went_back() == set()
    tracker.track("p0", 3)  # the broker's log restarted below what we had read
    assert tracker.take_went_back() == {"p0"}
    assert tracker.take_went_back() == set()
    assert not tracker.is_current(old)  # late outcomes of the old log cannot move offsets
    tracker.mark_committed({"p1": 6})
    assert tracker.committed("p1") == 6 and tracker.committed("nope") is None


def test_a_new_cluster_id_means_the_logs_are_gone() -> None:
    assert cluster_changed("old-id", "new-id")
    assert not cluster_changed("same", "same")
    assert not cluster_changed(None, "first-answer")   # nothing known yet
    assert not cluster_changed("known", None)          # no answer carried an id


def test_group_reset_is_a_join_that_did_not_move_the_generation_forward() -> None:
    assert not group_reset(None, 1)       # the first join this process sees
    assert not group_reset(3, 4)          # a rebalance of a healthy group
    assert group_reset(3, 3)              # the coordinator handed out the same generation
    assert group_reset(5, 1)              # ... or started the group over
    assert group_reset(0, 0)              # Tansu's first generation is 0
    assert group_reset(3, 0)
    assert not group_reset(0, 1)
    assert not group_reset(3, -1)         # aiokafka's "no generation": unknown
    assert not group_reset(-1, 0)
