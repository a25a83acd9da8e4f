"""The lost-log recovery plan: which partitions went backwards, what to rewind, what to
re-announce, and that no commit goes above a partition's end."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from services.dispatcher.offsets import OffsetTracker
from services.dispatcher.recovery import (
    Backwards,
    PartitionView,
    cap_commits,
    judge_partition,
    merge_seen_ends,
    plan_recovery,
)


def test_a_sane_partition_needs_nothing() -> None:
    views = {"p0": PartitionView(end=300, position=274, committed=270, previous_end=290),
             "p1": PartitionView(end=0), "p2": PartitionView(end=5, position=5, committed=5)}
    plan = plan_recovery(views)
    assert not plan.needed and plan.rewind == {} and not plan.reannounce


def test_position_above_end_rewinds_and_reannounces() -> None:
    """The issue's case: committed 274 on a partition whose new end is 234."""
    plan = plan_recovery({"p3": PartitionView(end=234, position=274, committed=274),
                          "p4": PartitionView(end=10, position=10)})
    assert plan.rewind == {"p3": Backwards.POSITION_ABOVE_END}
    assert plan.reannounce and plan.needed


def test_each_reason_is_recognised() -> None:
    assert judge_partition(PartitionView(end=5, position=6)) is Backwards.POSITION_ABOVE_END
    assert judge_partition(PartitionView(end=5, position=5, committed=9)) \
        is Backwards.COMMITTED_ABOVE_END
    assert judge_partition(PartitionView(end=5, position=0, previous_end=40)) \
        is Backwards.END_SHRANK
    assert judge_partition(PartitionView(end=40, position=0, previous_end=40)) is None


def test_a_log_reset_seen_by_the_fetcher_reannounces_without_rewinding() -> None:
    plan = plan_recovery({"p0": PartitionView(end=3, position=3)},
                         read_below_position=frozenset({"p0"}))
    assert plan.rewind == {} and plan.reannounce


def test_commits_above_the_end_are_held_back() -> None:
    allowed, held = cap_commits({"a": 10, "b": 274, "c": 7}, {"a": 10, "b": 234})
    assert allowed == {"a": 10, "c": 7}  # c: end unknown, committed as asked
    assert held == {"b"}


def test_seen_ends_only_grow_except_after_a_rewind() -> None:
    merged = merge_seen_ends({"a": 50, "b": 80}, {"a": 40, "b": 90, "c": 3}, rewound={"a"})
    assert merged == {"a": 40, "b": 90, "c": 3}
    assert merge_seen_ends({"a": 50}, {"a": 40}, rewound=set()) == {"a": 50}


@given(st.lists(st.tuples(st.integers(0, 1000), st.integers(0, 1000)), min_size=1, max_size=20))
def test_capped_commits_never_exceed_their_end(pairs: list[tuple[int, int]]) -> None:
    offsets = {i: off for i, (off, _) in enumerate(pairs)}
    ends = {i: end for i, (_, end) in enumerate(pairs)}
    allowed, held = cap_commits(offsets, ends)
    assert all(off <= ends[p] for p, off in allowed.items())
    assert set(allowed) | held == set(offsets) and not set(allowed) & held


@given(end=st.integers(0, 10_000), position=st.integers(0, 10_000),
       previous=st.integers(0, 10_000))
def test_a_rewind_is_planned_exactly_when_the_log_went_backwards(
        end: int, position: int, previous: int) -> None:
    plan = plan_recovery({"p": PartitionView(end=end, position=position, previous_end=previous)})
    assert ("p" in plan.rewind) == (position > end or previous > end)
    assert plan.reannounce == ("p" in plan.rewind)


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
