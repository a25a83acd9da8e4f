"""RFC 3339 UTC timestamps as the contract writes them: ``2026-11-22T10:00:00.123Z``."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    """The current time as an aware UTC datetime."""
    return datetime.now(UTC)


def format_ts(value: datetime | None) -> str | None:
    """Render an aware datetime as RFC 3339 UTC with millisecond precision; None stays None."""
    if value is None:
        return None
    v = value.astimezone(UTC)
    # four-digit years always (strftime's %Y writes year 322 as "322", not RFC 3339)
    return (f"{v.year:04d}-{v.month:02d}-{v.day:02d}T{v.hour:02d}:{v.minute:02d}:"
            f"{v.second:02d}.{v.microsecond // 1000:03d}Z")


def parse_ts(text: str) -> datetime:
    """Parse an RFC 3339 timestamp (``Z`` or an offset required); raises ValueError otherwise."""
    if not isinstance(text, str) or len(text) > 64:
        raise ValueError("not an RFC 3339 timestamp")
    candidate = text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text
    try:
        parsed = datetime.fromisoformat(candidate)
    except ValueError as exc:
        raise ValueError("not an RFC 3339 timestamp") from exc
    if parsed.tzinfo is None or "T" not in candidate.upper():
        raise ValueError(
            "timestamp needs a date, a time and a UTC offset (e.g. 2026-11-22T10:00:00Z)")
    try:
        return parsed.astimezone(UTC)
    except OverflowError as exc:  # e.g. 0001-01-01T00:00:00+05:00 is before year 1 in UTC
        raise ValueError("timestamp is out of range once in UTC") from exc
