"""Admin request bodies: validation, defaults and request fingerprints."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from services.dlq_replay.schemas import (
    DEFAULT_RATE,
    parse_bulk_replay,
    parse_event_replay,
    parse_idempotency_key,
    request_hash,
)
from shared.core.errors import InvalidRequest
from shared.core.ids import new_id


def test_event_replay_defaults() -> None:
    parsed = parse_event_replay({"reason": "  fixed  "})
    assert (parsed.reason, parsed.endpoint_ids, parsed.include_succeeded) == ("fixed", None, False)


def test_event_replay_endpoint_ids_are_deduplicated_in_order() -> None:
    a, b = new_id("ep"), new_id("ep")
    parsed = parse_event_replay({"reason": "r", "endpoint_ids": [b, a, b],
                                 "include_succeeded": True})
    assert parsed.endpoint_ids == (b, a) and parsed.include_succeeded is True


@pytest.mark.parametrize(("body", "param"), [
    ({}, "reason"),
    ({"reason": ""}, "reason"),
    ({"reason": 5}, "reason"),
    ({"reason": "x" * 1001}, "reason"),
    ({"reason": "x", "endpoint_ids": "ep_1"}, "endpoint_ids"),
    ({"reason": "x", "endpoint_ids": [new_id("evt")]}, "endpoint_ids"),
    ({"reason": "x", "include_succeeded": 1}, "include_succeeded"),
    ({"reason": "x", "extra": None}, "extra"),
])
def test_event_replay_errors_name_the_field(body: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        parse_event_replay(body)
    assert info.value.param == param


def test_bulk_replay_defaults_and_filter() -> None:
    endpoint = new_id("ep")
    parsed = parse_bulk_replay({"reason": "outage", "filter": {
        "endpoint_id": endpoint, "account_id": "acme", "type": "invoice.paid",
        "since": "2026-11-22T10:00:00Z", "until": "2026-11-22T12:00:00+01:00"}})
    assert parsed.max_per_second == DEFAULT_RATE
    assert parsed.filter.since == datetime(2026, 11, 22, 10, tzinfo=UTC)
    assert parsed.filter.until == datetime(2026, 11, 22, 11, tzinfo=UTC)
    assert parsed.filter.to_json() == {
        "endpoint_id": endpoint, "account_id": "acme", "type": "invoice.paid",
        "since": "2026-11-22T10:00:00.000Z", "until": "2026-11-22T11:00:00.000Z"}


def test_bulk_replay_without_a_filter_matches_everything() -> None:
    parsed = parse_bulk_replay({"reason": "all of it", "max_per_second": 5})
    assert parsed.filter.to_json() == {} and parsed.max_per_second == 5


@pytest.mark.parametrize(("body", "param"), [
    ({"reason": "x", "max_per_second": True}, "max_per_second"),
    ({"reason": "x", "max_per_second": 1.5}, "max_per_second"),
    ({"reason": "x", "filter": {"account_id": "no spaces"}}, "filter.account_id"),
    ({"reason": "x", "filter": {"type": ""}}, "filter.type"),
    ({"reason": "x", "filter": {"since": "2026-11-22"}}, "filter.since"),
    ({"reason": "x", "filter": {"until": 5}}, "filter.until"),
])
def test_bulk_replay_errors_name_the_field(body: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        parse_bulk_replay(body)
    assert info.value.param == param


def test_idempotency_key_header() -> None:
    assert parse_idempotency_key(None) is None
    assert parse_idempotency_key("abc-123") == "abc-123"
    for bad in ("", "x" * 256, "tab\there", "é"):
        with pytest.raises(InvalidRequest):
            parse_idempotency_key(bad)


def test_request_hash_ignores_key_order_but_not_content() -> None:
    one = request_hash("evt_a", {"reason": "r", "include_succeeded": False})
    assert one == request_hash("evt_a", {"include_succeeded": False, "reason": "r"})
    assert one != request_hash("evt_b", {"reason": "r", "include_succeeded": False})
    assert one != request_hash("evt_a", {"reason": "r2", "include_succeeded": False})
