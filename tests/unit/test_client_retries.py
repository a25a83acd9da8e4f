"""``PostwireClient`` retries: 5xx, 429 (Retry-After honoured) and connection errors with the
same Idempotency-Key every time; other 4xx at once; typed results. Against a scripted loopback
HTTP server standing in for ingest (the real services are in tests/e2e/test_python_client.py).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from deploy.embedded.ports import free_port
from postwire.client import (
    BatchItemError,
    PostwireApiError,
    PostwireClient,
    PostwireUnavailable,
    SentEvent,
    retry_after_s,
)

ACCEPTED = {"id": "evt_01", "account_id": "acct_1", "type": "a.b", "ordering_key": None,
            "created_at": "2026-12-04T10:00:00.000Z", "delivery_count": 2}


class Script:
    """Replies in order (status, headers, body); records every request."""

    def __init__(self, replies: list[tuple[int, dict[str, str], object]]) -> None:
        self.replies = replies
        self.requests: list[tuple[str, dict[str, str], object]] = []


@pytest.fixture
def server() -> Iterator[tuple[str, Script]]:
    script = Script([])

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers["Content-Length"])
            script.requests.append((self.path, dict(self.headers.items()),
                                    json.loads(self.rfile.read(length))))
            status, headers, body = script.replies.pop(0)
            raw = json.dumps(body).encode()
            self.send_response(status)
            for name, value in {"Content-Type": "application/json", **headers}.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", script
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def client(url: str, sleeps: list[float], **kwargs: object) -> PostwireClient:
    return PostwireClient(url, "key-1234", sleep=sleeps.append, rng=lambda: 0.5,
                          new_key=lambda: "generated-key", **kwargs)  # type: ignore[arg-type]


def test_5xx_and_429_are_retried_with_one_key_and_retry_after(
        server: tuple[str, Script]) -> None:
    url, script = server
    script.replies = [(503, {}, {"error": {"type": "unavailable", "message": "db",
                                           "param": None}}),
                      (429, {"Retry-After": "3"}, {"error": {"type": "rate_limited",
                                                             "message": "slow", "param": None}}),
                      (202, {"Idempotent-Replayed": "true"}, ACCEPTED)]
    sleeps: list[float] = []
    sent = client(url, sleeps).send("acct_1", "a.b", {"n": 1})
    assert sent == SentEvent(id="evt_01", account_id="acct_1", type="a.b", ordering_key=None,
                             created_at="2026-12-04T10:00:00.000Z", delivery_count=2,
                             idempotency_key="generated-key", replayed=True)
    assert sleeps == [0.1, 3.0]  # backoff 0.2 s x jitter 0.5, then Retry-After
    assert [r[1]["Idempotency-Key"] for r in script.requests] == ["generated-key"] * 3
    assert script.requests[0][1]["Authorization"] == "Bearer key-1234"
    assert script.requests[0][2] == {"account_id": "acct_1", "type": "a.b", "data": {"n": 1}}


def test_other_4xx_are_raised_at_once(server: tuple[str, Script]) -> None:
    url, script = server
    script.replies = [(409, {}, {"error": {"type": "idempotency_conflict", "message": "differs",
                                           "param": "Idempotency-Key"}})]
    sleeps: list[float] = []
    with pytest.raises(PostwireApiError) as caught:
        client(url, sleeps).send("acct_1", "a.b", {}, idempotency_key="order-1")
    assert (caught.value.status, caught.value.type, caught.value.param) == (
        409, "idempotency_conflict", "Idempotency-Key")
    assert sleeps == [] and len(script.requests) == 1


def test_connection_errors_back_off_exponentially_then_give_up() -> None:
    sleeps: list[float] = []
    dead = client(f"http://127.0.0.1:{free_port()}", sleeps, max_attempts=5, backoff_max_s=0.5)
    with pytest.raises(PostwireUnavailable) as caught:
        dead.send("acct_1", "a.b", {})
    assert sleeps == [0.1, 0.2, 0.25, 0.25]  # 0.2, 0.4, 0.8->0.5, 1.6->0.5, times jitter 0.5
    assert caught.value.attempts == 5 and caught.value.idempotency_keys == ["generated-key"]
    assert "cannot reach" in caught.value.last


def test_batch_results_are_typed_in_order(server: tuple[str, Script]) -> None:
    url, script = server
    refused = {"error": {"type": "invalid_request", "message": "type is required",
                         "param": "events[1].type"}}
    script.replies = [(502, {}, "bad gateway"), (202, {}, {"data": [ACCEPTED, refused]})]
    sleeps: list[float] = []
    results = client(url, sleeps).send_batch([
        {"account_id": "acct_1", "type": "a.b", "data": {}, "idempotency_key": "mine"},
        {"account_id": "acct_1", "type": "", "data": {}}])
    assert isinstance(results[0], SentEvent) and results[0].idempotency_key == "mine"
    assert results[0].replayed is None
    assert results[1] == BatchItemError(index=1, type="invalid_request",
                                        message="type is required", param="events[1].type",
                                        idempotency_key="generated-key")
    sent_items = script.requests[1][2]["events"]  # type: ignore[index]
    assert [e["idempotency_key"] for e in sent_items] == ["mine", "generated-key"]
    assert script.requests[0][2] == script.requests[1][2]  # the retry sent the same body
    with pytest.raises(ValueError):
        client(url, sleeps).send_batch([])


def test_retry_after_accepts_seconds_and_http_dates() -> None:
    assert retry_after_s("7", now=0) == 7.0
    assert retry_after_s("Thu, 01 Jan 1970 00:00:30 GMT", now=10) == 20.0
    assert retry_after_s("soon", now=0) is None and retry_after_s(None, now=0) is None
