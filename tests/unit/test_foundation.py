"""Unit tests of the foundation's pure helpers: ids, timestamps, cursors, errors, body parsing."""

from __future__ import annotations

import base64
import random
from datetime import UTC, datetime, timedelta, timezone

import orjson
import pytest

from shared.core import ids
from shared.core.cursor import decode_cursor, encode_cursor
from shared.core.errors import ApiError, InvalidRequest, NotFound, PayloadTooLarge
from shared.core.ids import is_valid_id, new_id
from shared.core.timefmt import format_ts, parse_ts
from shared.http.body import parse_json_object, reject_unknown


def test_ids_are_prefixed_and_sorted_by_creation() -> None:
    ids = [new_id("evt") for _ in range(2000)]
    assert all(i.startswith("evt_") and len(i) == 30 for i in ids)
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    assert all(is_valid_id(i, "evt") for i in ids[:50])


def _reference_encoding(value: int) -> str:
    """ULID text by the definition: 26 groups of 5 bits, most significant first."""
    alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
    return "".join(alphabet[(value >> (5 * (25 - i))) & 31] for i in range(26))


def test_id_encoding_is_crockford_base32_of_the_128_bits() -> None:
    rng = random.Random(7)
    edges = [0, 1, 31, 32, (1 << 128) - 1, 1 << 127, 1 << 80, 0x0123456789ABCDEF0123456789ABCDEF]
    for value in edges + [rng.getrandbits(128) for _ in range(1000)]:
        assert ids._encode(value) == _reference_encoding(value), hex(value)


def test_id_validation_refuses_wrong_prefix_length_and_alphabet() -> None:
    good = new_id("dlv")
    assert is_valid_id(good, "dlv")
    assert not is_valid_id(good, "evt")
    assert not is_valid_id(good[:-1], "dlv")
    assert not is_valid_id(good[:-1] + "U", "dlv")  # U is not Crockford base32
    assert not is_valid_id("dlv_" + "Z" * 26, "dlv")  # timestamp overflow
    with pytest.raises(ValueError):
        new_id("nope")


def test_timestamps_render_as_rfc3339_utc_millis() -> None:
    value = datetime(2026, 11, 22, 10, 0, 0, 123456, tzinfo=UTC)
    assert format_ts(value) == "2026-11-22T10:00:00.123Z"
    shifted = value.astimezone(timezone(timedelta(hours=2)))
    assert format_ts(shifted) == "2026-11-22T10:00:00.123Z"
    assert format_ts(None) is None


@pytest.mark.parametrize("text, expected", [
    ("2026-11-22T10:00:00Z", datetime(2026, 11, 22, 10, tzinfo=UTC)),
    ("2026-11-22T10:00:00.5z", datetime(2026, 11, 22, 10, 0, 0, 500000, tzinfo=UTC)),
    ("2026-11-22T12:00:00+02:00", datetime(2026, 11, 22, 10, tzinfo=UTC)),
])
def test_parse_ts_accepts_offsets(text: str, expected: datetime) -> None:
    assert parse_ts(text) == expected


@pytest.mark.parametrize("text", ["2026-11-22", "2026-11-22T10:00:00", "yesterday", "", "1" * 80])
def test_parse_ts_refuses_ambiguous_or_garbage(text: str) -> None:
    with pytest.raises(ValueError):
        parse_ts(text)


def test_cursor_round_trip_and_kind_check() -> None:
    cursor = encode_cursor("events", ["evt_01", 7])
    assert decode_cursor("events", cursor, (str, int)) == ["evt_01", 7]
    with pytest.raises(InvalidRequest) as excinfo:
        decode_cursor("endpoints", cursor, (str, int))
    assert excinfo.value.param == "cursor"
    for garbage in ["", "!!!", "bm90IGpzb24", encode_cursor("events", [])[:-3] + "@@@"]:
        with pytest.raises(InvalidRequest):
            decode_cursor("events", garbage, (str, int))


@pytest.mark.parametrize("key", [[], ["evt_01"], ["evt_01", 7, 8], [7, "evt_01"],
                                 ["evt_01", True], ["evt_01", 7.5], ["evt_01", None]])
def test_cursor_of_the_wrong_shape_is_refused(key: list[object]) -> None:
    forged = base64.urlsafe_b64encode(orjson.dumps({"k": "events", "v": key})).decode()
    with pytest.raises(InvalidRequest) as excinfo:
        decode_cursor("events", forged, (str, int))
    assert excinfo.value.param == "cursor"


def test_error_body_has_the_contract_shape() -> None:
    assert NotFound("no such event").body() == {
        "error": {"type": "not_found", "message": "no such event", "param": None}}
    err: ApiError = PayloadTooLarge("too big", param="data")
    assert (err.status, err.body()["error"]["type"], err.body()["error"]["param"]) == (
        413, "payload_too_large", "data")


def test_parse_json_object_refuses_non_objects() -> None:
    assert parse_json_object(b'{"a": 1}') == {"a": 1}
    for raw, fragment in [(b"", "empty"), (b"[1]", "JSON object"), (b"{", "not valid JSON"),
                          (b'"x"', "JSON object")]:
        with pytest.raises(InvalidRequest) as excinfo:
            parse_json_object(raw)
        assert fragment in excinfo.value.message


def test_reject_unknown_names_the_field() -> None:
    reject_unknown({"a": 1}, {"a", "b"})
    with pytest.raises(InvalidRequest) as excinfo:
        reject_unknown({"a": 1, "zz": 2}, {"a"}, where="events[0].")
    assert excinfo.value.param == "events[0].zz"
