"""The contract's error body, and JSON request bodies refused in that format."""

from __future__ import annotations

import pytest

from shared.core.errors import ApiError, InvalidRequest, NotFound, PayloadTooLarge
from shared.http.body import parse_json_object, reject_unknown


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
