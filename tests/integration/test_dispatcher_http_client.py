"""The webhook HTTP client against a real local server: error classes, limits, SSRF guard."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from deploy.embedded.ports import free_port
from shared.adapters.http_client import WebhookClient, literal_host_block
from shared.core.retry import FailureKind
from tests.support.receiver import Receiver, Reply


@pytest_asyncio.fixture
async def rx() -> AsyncIterator[Receiver]:
    async with Receiver() as receiver:
        yield receiver


@pytest_asyncio.fixture
async def client() -> AsyncIterator[WebhookClient]:
    c = WebhookClient(timeout_s=1.0, allow_private=True)
    yield c
    await c.close()


async def test_success_reads_body_and_headers(rx: Receiver, client: WebhookClient) -> None:
    rx.program("/ok", [Reply(202, body=b"thanks", headers={"Retry-After": "3"})])
    out = await client.post(rx.url("/ok"), b'{"a":1}', {"webhook-id": "evt_x"})
    assert (out.status_code, out.failure, out.body, out.retry_after) == (202, None, b"thanks",
                                                                         "3")
    got = rx.requests_for("/ok")[0]
    assert got.body == b'{"a":1}' and got.headers["webhook-id"] == "evt_x"
    assert "accept-encoding" not in got.headers


async def test_cookies_a_receiver_sets_are_never_sent_back(rx: Receiver,
                                                          client: WebhookClient) -> None:
    rx.program("/c", [Reply(200, headers={"Set-Cookie": "session=merchant-a; Path=/"})] * 2)
    for _ in range(2):  # by name: aiohttp's default jar ignores cookies of IP-literal hosts
        url = f"http://localhost:{rx.port}/c"
        assert (await client.post(url, b"{}", {})).status_code == 200
    assert [r.headers.get("cookie") for r in rx.requests_for("/c")] == [None, None]


async def test_redirect_is_returned_not_followed(rx: Receiver, client: WebhookClient) -> None:
    rx.program("/r", [Reply(307, headers={"Location": rx.url("/elsewhere")})])
    out = await client.post(rx.url("/r"), b"{}", {})
    assert out.status_code == 307
    assert rx.requests_for("/elsewhere") == []


async def test_timeout_is_classified(rx: Receiver, client: WebhookClient) -> None:
    rx.program("/hang", [Reply(200, delay_s=5)])
    out = await client.post(rx.url("/hang"), b"{}", {})
    assert out.failure is FailureKind.TIMEOUT and out.status_code is None
    assert 900 <= out.duration_ms < 3000


async def test_connection_refused_is_classified(client: WebhookClient) -> None:
    out = await client.post(f"http://127.0.0.1:{free_port()}/", b"{}", {})
    assert out.failure is FailureKind.CONNECTION and out.error


async def test_dns_failure_is_classified(client: WebhookClient) -> None:
    out = await client.post("http://no-such-host.invalid/", b"{}", {})
    assert out.failure is FailureKind.DNS


async def test_tls_failure_is_classified(rx: Receiver, client: WebhookClient) -> None:
    out = await client.post(f"https://127.0.0.1:{rx.port}/", b"{}", {})
    assert out.failure is FailureKind.TLS


async def test_body_is_read_up_to_the_limit_only(rx: Receiver) -> None:
    rx.program("/big", [Reply(200, body_bytes=50 * 1024 * 1024)])
    small = WebhookClient(timeout_s=5.0, allow_private=True, max_body_bytes=64 * 1024)
    try:
        out = await small.post(rx.url("/big"), b"{}", {})
    finally:
        await small.close()
    assert out.status_code == 200 and len(out.body) == 64 * 1024


@pytest.mark.parametrize("host", [
    "127.0.0.1", "localhost", "0x7f.1", "[::1]", "LOCALHOST.", "127.1",
    "\uff11\uff12\uff17.\uff10.\uff10.\uff11",  # full-width digits
    "127\u30020\u30020\u30021",  # ideographic full stops
])
async def test_private_targets_are_blocked_at_connect_time(rx: Receiver, host: str) -> None:
    guarded = WebhookClient(timeout_s=2.0, allow_private=False)
    try:
        out = await guarded.post(f"http://{host}:{rx.port}/x", b"{}", {})
    finally:
        await guarded.close()
    assert out.failure is FailureKind.SSRF_BLOCKED, out.error
    assert rx.requests == []


async def test_denied_port_is_blocked_even_with_private_targets_allowed(rx: Receiver) -> None:
    lenient = WebhookClient(timeout_s=2.0, allow_private=True, denied_ports=frozenset({rx.port}))
    try:
        out = await lenient.post(rx.url("/denied"), b"{}", {})
        assert out.failure is FailureKind.SSRF_BLOCKED and f"port {rx.port}" in (out.error or "")
        other = await lenient.post(f"http://127.0.0.1:{free_port()}/", b"{}", {})
        assert other.failure is FailureKind.CONNECTION  # other ports are tried as usual
    finally:
        await lenient.close()
    assert rx.requests == []


def test_literal_host_check() -> None:
    assert literal_host_block("http://10.0.0.1/") is not None
    assert literal_host_block("http://2130706433/") is not None
    assert literal_host_block("http://93.184.215.14/") is None
    assert literal_host_block("http://example.com/") is None
    assert literal_host_block("http://\uff11\uff12\uff17.\uff10.\uff10.\uff11:19500/x") is not None
    assert literal_host_block("http://127\u30020\u30020\u30021:19500/x") is not None
    assert literal_host_block("http://example.com:6379/", frozenset({6379})) is not None
