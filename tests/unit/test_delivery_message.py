"""The Kafka record for a delivery: key layout, value round trip, refusal of garbage."""

from __future__ import annotations

import orjson
import pytest

from shared.core.delivery_message import (
    DeliveryMessage,
    decode_delivery_message,
    delivery_key,
    encode_delivery_message,
)

ORDERED = DeliveryMessage("dlv_1", "evt_1", "ep_1", "acct", "order-7", 3, 0)
UNORDERED = DeliveryMessage("dlv_2", "evt_2", "ep_2", "acct", None, None, 4)


@pytest.mark.parametrize("message", [ORDERED, UNORDERED])
def test_round_trip(message: DeliveryMessage) -> None:
    assert decode_delivery_message(encode_delivery_message(message)) == message


def test_value_is_the_documented_compact_json() -> None:
    assert encode_delivery_message(ORDERED) == (
        b'{"delivery_id":"dlv_1","event_id":"evt_1","endpoint_id":"ep_1","account_id":"acct",'
        b'"ordering_key":"order-7","sequence":3,"generation":0}')


def test_key_is_the_endpoint_id_with_or_without_an_ordering_key() -> None:
    assert ORDERED.key == b"ep_1"
    assert UNORDERED.key == b"ep_2"
    same_endpoint = [DeliveryMessage(f"dlv_{i}", "evt_1", "ep_9", "acct", key, seq, 0)
                     for i, (key, seq) in enumerate([("caf\u00e9|x", 1), ("other", 4),
                                                     (None, None), (None, None)])]
    assert {m.key for m in same_endpoint} == {delivery_key("ep_9")} == {b"ep_9"}


def _value(**changes: object) -> bytes:
    base = orjson.loads(encode_delivery_message(ORDERED))
    base.update(changes)
    return orjson.dumps({k: v for k, v in base.items() if v != "<drop>"})


@pytest.mark.parametrize("raw", [
    b"", b"not json", b"[1, 2]", b'"text"', b"null",
    _value(delivery_id="<drop>"),
    _value(extra=1),
    _value(delivery_id=""),
    _value(event_id=7),
    _value(ordering_key=5),
    _value(sequence="3"),
    _value(sequence=True),
    _value(sequence=None),
    _value(ordering_key=None),
    _value(generation=-1),
    _value(generation=None),
    _value(generation=1.5),
])
def test_decode_refuses_garbage(raw: bytes) -> None:
    with pytest.raises(ValueError):
        decode_delivery_message(raw)
