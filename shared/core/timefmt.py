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
    value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


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
    return parsed.astimezone(UTC)
