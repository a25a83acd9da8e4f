"""Timestamps: RFC 3339 UTC with milliseconds out, offsets accepted in (edges: test_timefmt_edges).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from shared.core.timefmt import format_ts, parse_ts


def test_timestamps_render_as_rfc3339_utc_millis() -> None:
    value = datetime(2026, 11, 22, 10, 0, 0, 123456, tzinfo=UTC)
    assert format_ts(value) == "2026-11-22T10:00:00.123Z"
    shifted = value.astimezone(timezone(timedelta(hours=2)))
    assert format_ts(shifted) == "2026-11-22T10:00:00.123Z"
    assert format_ts(None) is None


@pytest.mark.parametrize("text, expected", [
    ("2026-11-22T10:00:00Z", datetime(2026, 11, 22, 10, tzinfo=UTC)),
    ("2026-11-22T10:00:00.5z", datetime(2026, 11, 22, 10, 0, 0, 500000, tzinfo=UTC)),
    ("2026-11-22T12:00:00+02:00", datetime(2026, 11, 22, 10, tzinfo=UTC)),
])
def test_parse_ts_accepts_offsets(text: str, expected: datetime) -> None:
    assert parse_ts(text) == expected


@pytest.mark.parametrize("text", ["2026-11-22", "2026-11-22T10:00:00", "yesterday", "", "1" * 80])
def test_parse_ts_refuses_ambiguous_or_garbage(text: str) -> None:
    with pytest.raises(ValueError):
        parse_ts(text)
