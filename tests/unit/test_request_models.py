"""msgspec request models: errors become 400 invalid_request naming the field's path."""

from __future__ import annotations

from typing import Any

import pytest

from services.dlq_replay.api_models import BulkReplay, EventReplay, PortalSessionCreate
from services.ingest.api_models import BatchItem, EventBatch, EventCreate
from shared.core.errors import InvalidRequest
from shared.http.models import convert_body
from shared.models.endpoints import EndpointCreate, EndpointPatch

EVENT = {"account_id": "a", "type": "t", "data": {}}


@pytest.mark.parametrize(("model", "body", "param"), [
    (EventCreate, {"type": "t", "data": {}}, "account_id"),
    (EventCreate, {**EVENT, "extra": 1}, "extra"),
    (EventCreate, {**EVENT, "data": []}, "data"),
    (EventCreate, {**EVENT, "ordering_key": "a\x01"}, "ordering_key"),
    (EventBatch, {"events": []}, "events"),
    (EventBatch, {"events": [EVENT], "x": 1}, "x"),
    (EventBatch, {"events": [EVENT] * 501}, "events"),
    (BatchItem, {**EVENT, "idempotency_key": "\u00e9"}, "idempotency_key"),
    (EndpointCreate, {"account_id": "a", "url": "https://x.test", "metadata": {"k": 5}},
     "metadata.k"),
    (EndpointCreate, {"account_id": "a", "url": "https://x.test", "event_types": ["a", 1]},
     "event_types[1]"),
    (EndpointPatch, {"enabled": None}, "enabled"),
    (EventReplay, {"reason": "r", "endpoint_ids": ["nope"]}, "endpoint_ids"),
    (EventReplay, {"reason": "   "}, "reason"),
    (BulkReplay, {"reason": "r", "filter": {"colour": "red"}}, "filter.colour"),
    (BulkReplay, {"reason": "r", "filter": {"until": 5}}, "filter.until"),
    (PortalSessionCreate, {"account_id": "a", "expires_in_s": 59}, "expires_in_s"),
    (PortalSessionCreate, {"account_id": "a", "expires_in_s": 60.0}, "expires_in_s"),
])
def test_errors_name_the_field(model: Any, body: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        convert_body(body, model)
    assert info.value.param == param
    assert info.value.status == 400 and info.value.message
    assert info.value.body()["error"]["type"] == "invalid_request"


def test_rules_word_the_message_and_prefix_nests() -> None:
    with pytest.raises(InvalidRequest) as info:
        convert_body({"account_id": "a b", "url": "https://x.test"}, EndpointCreate)
    assert info.value.message.startswith("account_id must be 1..64 characters")
    with pytest.raises(InvalidRequest) as info:
        convert_body({"account_id": 5}, PortalSessionCreate, prefix="outer")
    assert info.value.param == "outer.account_id"


def test_valid_bodies_convert_with_defaults() -> None:
    event = convert_body({**EVENT, "ordering_key": None}, EventCreate)
    assert (event.account_id, event.ordering_key, event.data) == ("a", None, {})
    replay = convert_body({"reason": "r"}, BulkReplay)
    assert (replay.max_per_second, replay.filter) == (100, None)
    endpoint = convert_body({"account_id": "a", "url": "https://x.test"}, EndpointCreate)
    assert endpoint.event_types == ["*"] and endpoint.max_in_flight == 10
