"""The benchmark receiver's HTTP parsing and bookkeeping (pure parts, no sockets)."""

from __future__ import annotations

import orjson
import pytest

from bench._receiver import BadRequest, Request, RequestParser, _State


def _post(path: str, body: bytes, *extra: str) -> bytes:
    head = [f"POST {path} HTTP/1.1", "Host: x", f"Content-Length: {len(body)}", *extra]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def test_a_request_split_anywhere_is_parsed_once_complete() -> None:
    raw = _post("/hook/a", b'{"k": 1}', "webhook-id: evt_1")
    for cut in range(1, len(raw)):
        parser = RequestParser()
        assert parser.feed(raw[:cut]) == []
        (request,) = parser.feed(raw[cut:])
        assert request == Request("POST", "/hook/a", {"host": "x", "content-length": "8",
                                                      "webhook-id": "evt_1"},
                                  b'{"k": 1}', True)


def test_pipelined_requests_come_out_in_order_and_a_partial_one_waits() -> None:
    raw = _post("/hook/a", b"one") + _post("/hook/b", b"two") + _post("/hook/c", b"three")
    parser = RequestParser()
    first = parser.feed(raw[:-2])
    assert [(r.path, r.body) for r in first] == [("/hook/a", b"one"), ("/hook/b", b"two")]
    (last,) = parser.feed(raw[-2:])
    assert (last.path, last.body) == ("/hook/c", b"three")


def test_keep_alive_follows_the_http_version_and_connection_header() -> None:
    parser = RequestParser()
    (closing,) = parser.feed(_post("/x", b"", "Connection: close"))
    (old,) = parser.feed(b"GET /_stats HTTP/1.0\r\n\r\n")
    (old_kept,) = parser.feed(b"GET /_stats HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    assert (closing.keep_alive, old.keep_alive, old_kept.keep_alive) == (False, False, True)


@pytest.mark.parametrize("raw", [
    b"POST /hook/a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    b"POST /hook/a HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
    b"POST /hook/a HTTP/1.1\r\nContent-Length: 1x\r\n\r\n",
    b"POST /hook/a HTTP/2\r\n\r\n",
    b"garbage\r\n\r\n",
    b"GET / HTTP/1.1\r\nno colon here\r\n\r\n",
    b"GET / HTTP/1.1\r\n" + b"a" * (70 * 1024),
])
def test_malformed_requests_are_refused(raw: bytes) -> None:
    with pytest.raises(BadRequest):
        RequestParser().feed(raw)


def test_state_counts_repeats_and_take_hands_over_each_first_arrival_once() -> None:
    state = _State()
    hook = Request("POST", "/hook/ep1", {"webhook-id": "evt_1"}, b"{}", True)
    other = Request("POST", "/hook/ep2", {"webhook-id": "evt_1"}, b"{}", True)
    assert state.respond(hook, 10.0).startswith(b"HTTP/1.1 204 ")
    state.respond(hook, 11.0)
    state.respond(other, 12.0)
    stats = state.respond(Request("GET", "/_stats", {}, b"", True), 13.0)
    assert orjson.loads(stats.split(b"\r\n\r\n", 1)[1]) == {
        "received": 3, "distinct": 2, "duplicates": 1}
    taken = state.respond(Request("POST", "/_take", {}, b"", True), 14.0)
    assert orjson.loads(taken.split(b"\r\n\r\n", 1)[1]) == {"ep1 evt_1": 10.0, "ep2 evt_1": 12.0}
    again = state.respond(Request("POST", "/_take", {}, b"", True), 15.0)
    assert orjson.loads(again.split(b"\r\n\r\n", 1)[1]) == {}
    missing = state.respond(Request("GET", "/nope", {}, b"", True), 16.0)
    assert missing.startswith(b"HTTP/1.1 404 ")
