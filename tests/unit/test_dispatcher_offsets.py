"""OffsetTracker: commit only up to the lowest offset whose outcome is not yet durable."""

from __future__ import annotations

from services.dispatcher.offsets import OffsetTracker


def test_commit_stops_at_the_lowest_open_offset() -> None:
    tracker = OffsetTracker()
    tickets = [tracker.track("p0", offset) for offset in range(10, 15)]
    tracker.done(tickets[1])
    tracker.done(tickets[3])
    assert tracker.committable() == {"p0": 10}
    tracker.done(tickets[0])
    assert tracker.committable() == {"p0": 12}
    for ticket in tickets:
        tracker.done(ticket)
    assert tracker.committable() == {"p0": 15}
    assert tracker.open_count() == 0


def test_committable_reports_only_changes_since_the_last_commit() -> None:
    tracker = OffsetTracker()
    ticket = tracker.track("p0", 0)
    tracker.done(ticket)
    assert tracker.committable() == {"p0": 1}
    tracker.mark_committed({"p0": 1})
    assert tracker.committable() == {}
    tracker.track("p0", 1)
    assert tracker.committable() == {}  # still 1: offset 1 is open
    assert tracker.position("p0") == 2


def test_partitions_are_independent_and_filterable() -> None:
    tracker = OffsetTracker()
    a = tracker.track("a", 5)
    tracker.track("b", 7)
    tracker.done(a)
    assert tracker.committable() == {"a": 6, "b": 7}
    assert tracker.committable({"b"}) == {"b": 7}


def test_a_log_that_restarts_from_zero_starts_a_new_epoch() -> None:
    tracker = OffsetTracker()
    old = tracker.track("p0", 500)
    new = tracker.track("p0", 0)  # the broker came back empty
    assert not tracker.is_current(old) and tracker.is_current(new)
    tracker.done(old)  # a late outcome of the old log moves nothing
    assert tracker.committable() == {"p0": 0}
    tracker.done(new)
    assert tracker.committable() == {"p0": 1}


def test_dropped_partitions_ignore_late_tickets() -> None:
    tracker = OffsetTracker()
    ticket = tracker.track("p0", 3)
    tracker.drop({"p0"})
    tracker.done(ticket)
    assert tracker.committable() == {}
    again = tracker.track("p0", 3)  # re-assigned later: tracking starts afresh
    assert tracker.is_current(again) and not tracker.is_current(ticket)
    tracker.drop(None)
    assert tracker.open_count() == 0
