"""Event body validation (single and batch) and the rendered webhook body."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from services.ingest.event_validation import (
    MAX_BATCH_EVENTS,
    EventInput,
    batch_body_limit,
    parse_batch,
    parse_event,
    webhook_body,
)
from shared.core.errors import ApiError, InvalidRequest, PayloadTooLarge

LIMIT = 4096
Render = Callable[[Any], bytes]


def _spaced(obj: Any) -> bytes:
    return json.dumps(obj, indent=1, ensure_ascii=False).encode()


def _python_default(obj: Any) -> bytes:
    return json.dumps(obj).encode()


@pytest.fixture(params=[orjson.dumps, _python_default, _spaced],
                ids=["compact", "python-default", "spaced"])
def render(request: pytest.FixtureRequest) -> Render:
    """Bodies as a compact producer and Python's json.dumps write them (the fast path) and with
    other whitespace (the general reader): every rule must hold for each."""
    fn: Render = request.param
    return fn


def validate_event(obj: dict[str, Any], render: Render = orjson.dumps,
                   **kwargs: Any) -> EventInput:
    return parse_event(render(obj), **kwargs)


def validate_batch(obj: dict[str, Any], limit: int,
                   render: Render = orjson.dumps) -> list[EventInput | ApiError]:
    return parse_batch(render(obj), limit)


def _event(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"account_id": "acct_1", "type": "invoice.paid", "data": {"n": 1}}
    base.update(changes)
    return {k: v for k, v in base.items() if v is not ...}


def _error(obj: dict[str, Any], render: Render = orjson.dumps, **kwargs: Any) -> ApiError:
    with pytest.raises(ApiError) as info:
        validate_event(obj, render, max_data_bytes=LIMIT, **kwargs)
    return info.value


def test_valid_event_is_accepted_with_the_producers_data_bytes(render: Render) -> None:
    data = {"a": [1, 2], "b": "\u00e9"}
    raw = render(_event(data=data, ordering_key="k-1"))
    event = parse_event(raw, max_data_bytes=LIMIT)
    assert (event.account_id, event.type, event.ordering_key) == ("acct_1", "invoice.paid", "k-1")
    assert event.data_json.startswith(b"{") and event.data_json.endswith(b"}")
    assert event.data_json in raw and json.loads(event.data_json) == data
    assert event.idempotency_key is None and event.request_hash is None


def test_null_ordering_key_means_absent(render: Render) -> None:
    event = validate_event(_event(ordering_key=None), render, max_data_bytes=LIMIT)
    assert event.ordering_key is None


def test_header_key_sets_a_request_hash(render: Render) -> None:
    event = validate_event(_event(), render, max_data_bytes=LIMIT, idempotency_key="key-1")
    assert event.idempotency_key == "key-1"
    assert event.request_hash is not None and len(event.request_hash) == 32


@pytest.mark.parametrize(("changes", "param"), [
    ({"account_id": ...}, "account_id"),
    ({"account_id": ""}, "account_id"),
    ({"account_id": "a" * 65}, "account_id"),
    ({"account_id": "acct.1"}, "account_id"),
    ({"account_id": 12}, "account_id"),
    ({"type": ...}, "type"),
    ({"type": "t" * 129}, "type"),
    ({"type": "invoice paid"}, "type"),
    ({"type": "invoice/paid"}, "type"),
    ({"data": ...}, "data"),
    ({"data": [1]}, "data"),
    ({"data": "x"}, "data"),
    ({"data": None}, "data"),
    ({"ordering_key": ""}, "ordering_key"),
    ({"ordering_key": "k" * 257}, "ordering_key"),
    ({"ordering_key": "a\x00b"}, "ordering_key"),
    ({"ordering_key": "a\nb"}, "ordering_key"),
    ({"ordering_key": 5}, "ordering_key"),
    ({"extra": 1}, "extra"),
    ({"idempotency_key": "k"}, "idempotency_key"),  # only batch items may carry it
])
def test_invalid_fields_are_400_naming_the_field(changes: dict[str, Any], param: str,
                                                 render: Render) -> None:
    error = _error(_event(**changes), render)
    assert isinstance(error, InvalidRequest)
    assert error.param == param


@pytest.mark.parametrize("changes", [
    {"account_id": "a" * 64}, {"account_id": "A-z_0"}, {"type": "t" * 128},
    {"type": "a.b-c_D.9"}, {"ordering_key": "k" * 256}, {"ordering_key": "caf\u00e9 | 1"},
    {"data": {}},
])
def test_boundaries_are_accepted(changes: dict[str, Any], render: Render) -> None:
    assert isinstance(validate_event(_event(**changes), render, max_data_bytes=LIMIT),
                      EventInput)


def test_oversized_data_is_413(render: Render) -> None:
    error = _error(_event(data={"x": "y" * LIMIT}), render)
    assert isinstance(error, PayloadTooLarge)
    assert error.param == "data"


def test_batch_returns_items_and_errors_in_place(render: Render) -> None:
    items = validate_batch({"events": [
        _event(idempotency_key="k1"), _event(type="bad type"), "not an object",
        _event(idempotency_key="\x7f"), _event(data={"x": "y" * LIMIT}),
    ]}, LIMIT, render)
    assert isinstance(items[0], EventInput) and items[0].idempotency_key == "k1"
    assert items[0].request_hash is not None
    assert [getattr(i, "param", None) for i in items[1:]] == [
        "events[1].type", "events[2]", "events[3].idempotency_key", "events[4].data"]
    assert isinstance(items[4], PayloadTooLarge)


@pytest.mark.parametrize("body", [
    {}, {"events": []}, {"events": "x"}, {"events": [_event()] * (MAX_BATCH_EVENTS + 1)},
    {"events": [_event()], "other": 1},
])
def test_batch_envelope_errors_fail_the_request(body: dict[str, Any], render: Render) -> None:
    with pytest.raises(InvalidRequest):
        validate_batch(body, LIMIT, render)


def test_batch_of_500_is_accepted(render: Render) -> None:
    assert len(validate_batch({"events": [_event()] * MAX_BATCH_EVENTS}, LIMIT, render)) == 500


def test_batch_body_limit() -> None:
    assert batch_body_limit(1024) == 500 * 2048
    assert batch_body_limit(262144) == 500 * (262144 + 1024)  # any batch the contract allows


@pytest.mark.parametrize("data", [{}, {"a": 1, "b": [True, None, 1.5]}, {"t": "\u00e9\u2603\"\\"}])
def test_webhook_body_equals_orjson_of_the_contract_dict(data: dict[str, Any]) -> None:
    event = validate_event(_event(data=data), orjson.dumps, max_data_bytes=LIMIT)
    body = webhook_body("evt_X", "2026-11-22T10:00:00.123Z", event)
    assert body == orjson.dumps({"id": "evt_X", "type": "invoice.paid",
                                 "timestamp": "2026-11-22T10:00:00.123Z",
                                 "account_id": "acct_1", "data": data})
