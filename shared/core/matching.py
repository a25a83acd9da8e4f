"""Which endpoints an event type goes to.

An endpoint subscribes with a list of patterns, each one of: an exact event type
(``invoice.paid``), a prefix wildcard (``invoice.*``: every type under ``invoice.``, at any
depth, but not ``invoice`` itself nor ``invoices.paid``), or ``*`` (everything).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

MAX_EVENT_TYPE_LENGTH = 128
WILDCARD_ALL = "*"
_EVENT_TYPE_RE = re.compile(r"[A-Za-z0-9_.-]{1,128}")
_WILDCARD_SUFFIX = ".*"


def is_valid_event_type(event_type: str) -> bool:
    """True for 1..128 characters of ``[A-Za-z0-9_.-]`` (the contract's event ``type``)."""
    return isinstance(event_type, str) and _EVENT_TYPE_RE.fullmatch(event_type) is not None


def validate_event_type_pattern(pattern: str) -> str | None:
    """An error message if ``pattern`` is not a valid subscription pattern, else None."""
    if not isinstance(pattern, str):
        return "event type pattern must be a string"
    if pattern == WILDCARD_ALL:
        return None
    if pattern.endswith(_WILDCARD_SUFFIX):
        prefix = pattern[: -len(_WILDCARD_SUFFIX)]
        if is_valid_event_type(prefix) and len(prefix) <= MAX_EVENT_TYPE_LENGTH - 2:
            return None
        return (f"event type pattern {pattern!r}: the part before '.*' must be 1.."
                f"{MAX_EVENT_TYPE_LENGTH - 2} characters of letters, digits, '_', '.', '-'")
    if "*" in pattern:
        return (f"event type pattern {pattern!r}: '*' is allowed only alone or as a final "
                "'.*' (like 'invoice.*')")
    if not is_valid_event_type(pattern):
        return (f"event type pattern {pattern!r} must be 1..{MAX_EVENT_TYPE_LENGTH} characters "
                "of letters, digits, '_', '.', '-'")
    return None


def matches_pattern(pattern: str, event_type: str) -> bool:
    """True when one (valid) pattern selects ``event_type``; matching is case-sensitive."""
    if pattern == WILDCARD_ALL:
        return True
    if pattern.endswith(_WILDCARD_SUFFIX):
        stem = pattern[:-1]  # keeps the dot: "invoice."
        return len(event_type) > len(stem) and event_type.startswith(stem)
    return pattern == event_type


def matches(patterns: Sequence[str], event_type: str) -> bool:
    """True when any pattern selects ``event_type``; an empty list matches nothing."""
    return any(matches_pattern(pattern, event_type) for pattern in patterns)
