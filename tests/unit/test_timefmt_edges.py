"""Timestamps at the edges of the calendar (found by the OpenAPI contract fuzzing)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from shared.core.timefmt import format_ts, parse_ts


def test_years_below_1000_keep_four_digits() -> None:
    value = datetime(322, 9, 24, 19, 43, 43, 203999, tzinfo=UTC)
    assert format_ts(value) == "0322-09-24T19:43:43.203Z"
    assert parse_ts(format_ts(value) or "") == datetime(322, 9, 24, 19, 43, 43, 203000,
                                                        tzinfo=UTC)


@pytest.mark.parametrize("text", ["0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-05:00"])
def test_offsets_past_the_calendar_are_a_value_error(text: str) -> None:
    with pytest.raises(ValueError, match="out of range"):
        parse_ts(text)
