"""Event-type subscription patterns (shared.core.matching)."""

from __future__ import annotations

import pytest

from shared.core.matching import (
    is_valid_event_type,
    matches,
    matches_pattern,
    validate_event_type_pattern,
)

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    "pattern",
    [
        "*", "invoice.paid", "invoice", "a", "A-Z_0.9", "invoice.*", "invoice.line_item.*",
        "a.*", "x" * 128, "x" * 126 + ".*", "invoice..*", "-._", "v1.invoice-paid",
    ],
)
def test_valid_patterns(pattern: str) -> None:
    assert validate_event_type_pattern(pattern) is None


@pytest.mark.parametrize(
    ("pattern", "fragment"),
    [
        ("", "1..128"),
        ("x" * 129, "1..128"),
        ("x" * 127 + ".*", "before '.*'"),
        (".*", "before '.*'"),
        ("**", "'*' is allowed only"),
        ("*.*", "before '.*'"),
        ("invoice*", "'*' is allowed only"),
        ("invoice.*.paid", "'*' is allowed only"),
        ("*.paid", "'*' is allowed only"),
        ("invoice.p*", "'*' is allowed only"),
        ("in*voice.*", "before '.*'"),
        ("invoice paid", "1..128"),
        ("invoice/paid", "1..128"),
        ("invoice:paid", "1..128"),
        ("invoice.paid\n", "1..128"),
        ("caf\u00e9", "1..128"),
        ("invoice.?", "1..128"),
        (" *", "'*' is allowed only"),
    ],
)
def test_invalid_patterns(pattern: str, fragment: str) -> None:
    message = validate_event_type_pattern(pattern)
    assert message is not None
    assert fragment in message


def test_invalid_pattern_non_string() -> None:
    assert validate_event_type_pattern(5) == "event type pattern must be a string"  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("patterns", "event_type", "expected"),
    [
        (["*"], "invoice.paid", True),
        (["*"], "x", True),
        (["invoice.*"], "invoice.paid", True),
        (["invoice.*"], "invoice.x.y", True),
        (["invoice.*"], "invoice", False),
        (["invoice.*"], "invoice.", False),
        (["invoice.*"], "invoices.paid", False),
        (["invoice.*"], "invoicepaid", False),
        (["invoice.*"], "customer.invoice.paid", False),
        (["invoice.*"], "Invoice.paid", False),
        (["invoice.line.*"], "invoice.line.added", True),
        (["invoice.line.*"], "invoice.paid", False),
        (["invoice.paid"], "invoice.paid", True),
        (["invoice.paid"], "invoice.paid.late", False),
        (["invoice.paid"], "invoice.pai", False),
        (["invoice.paid"], "INVOICE.PAID", False),
        (["invoice"], "invoice", True),
        (["invoice"], "invoice.paid", False),
        (["invoice.paid", "customer.*"], "customer.created", True),
        (["invoice.paid", "customer.*"], "invoice.paid", True),
        (["invoice.paid", "customer.*"], "invoice.voided", False),
        ([], "invoice.paid", False),
    ],
)
def test_matches(patterns: list[str], event_type: str, expected: bool) -> None:
    assert matches(patterns, event_type) is expected


def test_matches_accepts_tuples_and_agrees_with_single_pattern() -> None:
    patterns = ("a.*", "b")
    for event_type in ("a.x", "a", "b", "b.x", "c"):
        assert matches(patterns, event_type) is any(
            matches_pattern(p, event_type) for p in patterns)


@pytest.mark.parametrize(
    ("event_type", "valid"),
    [("invoice.paid", True), ("x" * 128, True), ("", False), ("x" * 129, False),
     ("a*b", False), ("a b", False), ("caf\u00e9", False)],
)
def test_is_valid_event_type(event_type: str, valid: bool) -> None:
    assert is_valid_event_type(event_type) is valid
