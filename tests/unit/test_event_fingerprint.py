"""Idempotency: key syntax, what counts as the same request, and per-batch resolution."""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any

import orjson
import pytest

from services.ingest.event_validation import EventInput, parse_batch, parse_event
from services.ingest.idempotency import Accepted, resolve_outcomes
from shared.core.errors import IdempotencyConflict, InvalidRequest, Unavailable
from shared.core.event_fingerprint import (
    StoredKey,
    check_idempotency_key,
    first_uses,
    replay,
    request_hash,
)


@pytest.mark.parametrize("key", ["k", "k" * 255, " spaced key ", "~!@#$%^&*()_+{}|:<>?"])
def test_printable_keys_of_1_to_255_are_accepted(key: str) -> None:
    assert check_idempotency_key(key, "Idempotency-Key") == key


@pytest.mark.parametrize("key", ["", "k" * 256, "tab\there", "new\nline", "del\x7f", "caf\u00e9",
                                 None, 5])
def test_other_keys_are_400(key: object) -> None:
    with pytest.raises(InvalidRequest) as info:
        check_idempotency_key(key, "events[2].idempotency_key")
    assert info.value.param == "events[2].idempotency_key"


def _hash_of(raw: bytes) -> bytes | None:
    """The request hash of a raw JSON body, the way the single-event route computes it."""
    return parse_event(raw, max_data_bytes=1 << 20, idempotency_key="k").request_hash


BASE = b'{"account_id":"a","type":"t.x","data":{"n":1,"m":{"x":[1,2],"y":"z"}}}'


@pytest.mark.parametrize("same", [
    b'{ "account_id" : "a", "type": "t.x",\n "data": {"n": 1, "m": {"x": [1, 2], "y": "z"}} }',
    b'{"data":{"m":{"y":"z","x":[1,2]},"n":1},"type":"t.x","account_id":"a"}',
    b'{"account_id":"a","type":"t.x","data":{"n":1,"m":{"x":[1,2],"y":"z"}},"ordering_key":null}',
])
def test_whitespace_key_order_and_null_ordering_key_are_the_same_request(same: bytes) -> None:
    assert _hash_of(same) == _hash_of(BASE)


@pytest.mark.parametrize("different", [
    b'{"account_id":"b","type":"t.x","data":{"n":1,"m":{"x":[1,2],"y":"z"}}}',
    b'{"account_id":"a","type":"t.y","data":{"n":1,"m":{"x":[1,2],"y":"z"}}}',
    b'{"account_id":"a","type":"t.x","data":{"n":1.0,"m":{"x":[1,2],"y":"z"}}}',
    b'{"account_id":"a","type":"t.x","data":{"n":1,"m":{"x":[2,1],"y":"z"}}}',
    b'{"account_id":"a","type":"t.x","data":{"n":1,"m":{"x":[1,2],"y":"Z"}}}',
    b'{"account_id":"a","type":"t.x","data":{"n":1,"m":{"x":[1,2],"y":"z"}},"ordering_key":"o"}',
])
def test_any_change_of_content_is_a_different_request(different: bytes) -> None:
    assert _hash_of(different) != _hash_of(BASE)


def _data_hash(data: bytes) -> bytes | None:
    return _hash_of(b'{"account_id":"a","type":"t.x","data":' + data + b"}")


@pytest.mark.parametrize(("one", "other"), [
    (b'{"n":123456789012345678901234567890}', b'{"n":123456789012345678901234567891}'),
    (b'{"n":18446744073709551616}', b'{"n":18446744073709551617}'),
    (b'{"n":-9223372036854775809}', b'{"n":-9223372036854775810}'),
    (b'{"n":0.1}', b'{"n":0.10000000000000000001}'),
    (b'{"n":1e400}', b'{"n":1e401}'),
    (b'{"n":1}', b'{"n":1.0}'),
    (b'{"n":0.0}', b'{"n":-0.0}'),
])
def test_numbers_a_float_cannot_tell_apart_are_different_requests(one: bytes,
                                                                   other: bytes) -> None:
    assert _data_hash(one) != _data_hash(other)


@pytest.mark.parametrize(("one", "other"), [
    (b'{"n":1e2}', b'{"n":100.0}'),
    (b'{"n":1.50}', b'{"n":1.5}'),
    (b'{"n":123456789012345678901234567890}', b'{ "n" : 123456789012345678901234567890 }'),
    (b'{"n":1.00000000000000000000001e30,"m":2}', b'{"m":2,"n":100000000000000000000001e7}'),
    (b'{"s":"\\u00e9"}', '{"s":"\u00e9"}'.encode()),
])
def test_equal_values_spelled_differently_are_the_same_request(one: bytes, other: bytes) -> None:
    assert _data_hash(one) == _data_hash(other)


def test_the_hash_of_an_ordinary_payload_is_the_one_stored_before_exact_payloads() -> None:
    """Keys stored by earlier versions (orjson canonical form, domain v1) still match."""
    legacy = hashlib.sha256(b"postwire.event.v1\x00" + orjson.dumps(
        {"account_id": "a", "type": "t.x", "data": orjson.loads(BASE)["data"],
         "ordering_key": None}, option=orjson.OPT_SORT_KEYS)).digest()
    assert _hash_of(BASE) == legacy
    spaced = (b'{"account_id": "a", "type": "t.x",'
              b' "data": {"f": 2.5E-3, "i": -12, "u": 18446744073709551615}}')
    legacy_spaced = hashlib.sha256(b"postwire.event.v1\x00" + orjson.dumps(
        {"account_id": "a", "type": "t.x", "data": orjson.loads(spaced)["data"],
         "ordering_key": None}, option=orjson.OPT_SORT_KEYS)).digest()
    assert _hash_of(spaced) == legacy_spaced


def test_hash_does_not_depend_on_single_or_batch_transport() -> None:
    item = {**orjson.loads(BASE), "idempotency_key": "k"}
    [batch_event] = parse_batch(orjson.dumps({"events": [item]}), 1 << 20)
    assert isinstance(batch_event, EventInput)
    assert batch_event.request_hash == _hash_of(BASE)
    assert batch_event.request_hash == request_hash("a", "t.x", item["data"], None)


def test_replay_returns_the_stored_bytes_or_409() -> None:
    stored = StoredKey(b"h1", b'{"id":"evt_1"}')
    assert replay(stored, b"h1") == b'{"id":"evt_1"}'
    with pytest.raises(IdempotencyConflict) as info:
        replay(stored, b"h2", "events[3].idempotency_key")
    assert info.value.param == "events[3].idempotency_key"


def test_first_uses_maps_each_key_to_its_first_index() -> None:
    keys = [("a", "k"), None, ("a", "k"), ("b", "k"), ("a", "j")]
    assert first_uses(keys) == {("a", "k"): 0, ("b", "k"): 3, ("a", "j"): 4}


def _ev(key: str | None, data: dict[str, Any], prefix: str = "") -> EventInput:
    event = parse_event(orjson.dumps({"account_id": "a", "type": "t", "data": data}),
                        max_data_bytes=1 << 20, idempotency_key=key)
    return dataclasses.replace(event, param_prefix=prefix)


def test_resolve_outcomes_within_one_batch() -> None:
    events = [_ev("k", {"n": 1}), _ev(None, {}), _ev("k", {"n": 1}), _ev("k", {"n": 2}, "p."),
              _ev("old", {"n": 1}), _ev("old", {"n": 9})]
    first = {("a", "k"): 0, ("a", "old"): 4}
    responses = {0: b"r0", 1: b"r1", 4: b"r4"}
    taken = {("a", "old"): StoredKey(events[4].request_hash or b"", b"stored")}
    outcomes = resolve_outcomes(events, first, responses, {("a", "k")}, taken)
    assert outcomes[:3] == [Accepted(b"r0", False), Accepted(b"r1", False), Accepted(b"r0", True)]
    assert isinstance(outcomes[3], IdempotencyConflict)
    assert outcomes[3].param == "p.idempotency_key"
    assert outcomes[4] == Accepted(b"stored", True)
    assert isinstance(outcomes[5], IdempotencyConflict)
    assert outcomes[5].param == "Idempotency-Key"


def test_a_key_whose_record_could_not_be_read_back_is_503_not_a_guess() -> None:
    events = [_ev("k", {"n": 1}), _ev(None, {})]
    outcomes = resolve_outcomes(events, {("a", "k"): 0}, {1: b"r1"}, set(), {})
    assert isinstance(outcomes[0], Unavailable)
    assert outcomes[1] == Accepted(b"r1", False)
