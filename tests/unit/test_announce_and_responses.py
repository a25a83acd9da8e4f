"""The one builder of the ``deliveries`` record, and the one JSON answer helper."""

from __future__ import annotations

import orjson

from shared.adapters.kafka.topics import DELIVERIES
from shared.adapters.pg.announce import delivery_record
from shared.core.delivery_message import decode_delivery_message
from shared.http.responses import json_response

ROW = {"id": "dlv_01JD0000000000000000000001", "event_id": "evt_01JD0000000000000000000001",
       "endpoint_id": "ep_01JD0000000000000000000001", "account_id": "acct_1",
       "ordering_key": "order-7", "sequence": 3, "generation": 2}


def test_a_delivery_row_becomes_its_deliveries_record() -> None:
    record = delivery_record(ROW)
    assert record.topic == DELIVERIES
    message = decode_delivery_message(record.value)
    assert (message.delivery_id, message.event_id, message.endpoint_id, message.account_id,
            message.ordering_key, message.sequence, message.generation) == (
        ROW["id"], ROW["event_id"], ROW["endpoint_id"], "acct_1", "order-7", 3, 2)
    assert record.key == message.key == b"ep_01JD0000000000000000000001"


def test_an_unordered_delivery_is_keyed_by_its_endpoint_too() -> None:
    record = delivery_record({**ROW, "ordering_key": None, "sequence": None})
    assert record.key == b"ep_01JD0000000000000000000001"


def test_json_response_renders_compact_json_with_status_and_headers() -> None:
    response = json_response({"a": [1, "é"]}, 202, {"Idempotent-Replayed": "true"})
    assert response.status == 202 and response.content_type == "application/json"
    assert response.body == orjson.dumps({"a": [1, "é"]})
    assert response.headers["Idempotent-Replayed"] == "true"
    assert json_response([]).status == 200
