"""shared.core.per_second.PerSecondCount: events per second over whole seconds."""

from __future__ import annotations

from shared.core.per_second import PerSecondCount


def test_a_burst_is_seen_at_once_and_the_second_before_still_counts() -> None:
    count = PerSecondCount()
    assert count.recent(100.0) == 0
    assert count.add(100.1) == 1
    assert count.add(100.2, 4) == 5
    assert count.add(101.0) == 5          # the second before is larger
    assert count.recent(101.9) == 5


def test_one_quiet_second_is_enough_to_report_quiet_again() -> None:
    count = PerSecondCount()
    count.add(100.5, 50)
    assert count.recent(101.5) == 50      # the second before
    assert count.recent(102.0) == 0       # 101 was quiet
    count.add(103.2, 3)
    assert count.recent(105.0) == 0       # a gap of whole seconds forgets everything


def test_another_event_is_expected_within_a_wait_only_at_one_per_wait_or_more() -> None:
    count = PerSecondCount()
    count.add(100.0, 49)
    assert not count.another_within(100.5, 0.02)   # 49 a second x 20 ms < 1
    count.add(100.6)
    assert count.another_within(100.7, 0.02)       # 50 a second x 20 ms = 1
    assert not count.another_within(100.7, 0.0)    # no wait: never
