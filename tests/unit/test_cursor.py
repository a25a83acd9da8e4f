"""Paging cursors: opaque, bound to one list (kind), refused with param ``cursor`` when forged."""

from __future__ import annotations

import base64

import orjson
import pytest

from shared.core.cursor import decode_cursor, encode_cursor
from shared.core.errors import InvalidRequest


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
