"""Idempotency: key syntax, what counts as the same request, and per-batch resolution."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from services.ingest.event_validation import BATCH_ITEM_FIELDS, EventInput, validate_event
from services.ingest.idempotency import Accepted, resolve_outcomes
from shared.core.errors import IdempotencyConflict, InvalidRequest, Unavailable
from shared.core.idempotency import (
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
    return validate_event(orjson.loads(raw), max_data_bytes=1 << 20,
                          idempotency_key="k").request_hash


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


def test_hash_does_not_depend_on_single_or_batch_transport() -> None:
    item = {**orjson.loads(BASE), "idempotency_key": "k"}
    batch_event = validate_event(item, max_data_bytes=1 << 20, allowed=BATCH_ITEM_FIELDS,
                                 prefix="events[0].")
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
    return validate_event({"account_id": "a", "type": "t", "data": data}, max_data_bytes=1 << 20,
                          idempotency_key=key, prefix=prefix)


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
