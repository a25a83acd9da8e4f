"""The HTTP layer of real ingest and admin processes under hostile and careless clients.

Raw sockets send what aiohttp's client would refuse to: bad header bytes, oversized lines,
conflicting framing, NUL bytes. Every answer must be the contract's JSON error, echo none of
the input, carry ``Cache-Control: no-store`` and no ``Server`` banner; the log must hold no
traceback and no credential, and grow by a bounded amount however many bad requests come.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator

import aiohttp
import pytest

from deploy.embedded.ports import free_port
from deploy.embedded.services import ServiceName, ServiceProcess, start_service
from tests.conftest import TEST_ADMIN_TOKEN, TEST_API_KEY, ServiceEnvFactory
from tests.support.raw_http import RawResponse, exchange, request

MARKER = b"zq" * 8  # part of every malformed input; must never come back or reach the log


@pytest.fixture(scope="module")
def ingest(service_env: ServiceEnvFactory,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    log_path = tmp_path_factory.mktemp("hardening") / "ingest.log"
    service = start_service("ingest", service_env(METRICS_PORT=None), log_path)
    try:
        service.wait_healthy(timeout_s=60.0)
        yield service
    finally:
        service.stop()


@pytest.fixture(scope="module")
def admin(service_env: ServiceEnvFactory,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    log_path = tmp_path_factory.mktemp("hardening") / "admin.log"
    service = start_service("dlq_replay", service_env(), log_path)
    try:
        service.wait_healthy(timeout_s=60.0)
        yield service
    finally:
        service.stop()


def port_of(service: ServiceProcess) -> int:
    return int(service.base_url.rsplit(":", 1)[1])


def assert_contract_error(response: RawResponse, status: int, error_type: str) -> None:
    assert response.status == status, response
    assert response.headers.get("content-type", "").startswith("application/json"), response
    body = response.json()
    assert isinstance(body, dict) and set(body) == {"error"}, body
    assert set(body["error"]) == {"type", "message", "param"}, body
    assert body["error"]["type"] == error_type, body
    assert response.headers.get("cache-control") == "no-store", response.headers
    assert "server" not in response.headers, response.headers


def malformed_requests() -> dict[str, bytes]:
    """The parser faults of the issue, each carrying MARKER in the offending part."""
    auth = [(b"Authorization", f"Bearer {TEST_API_KEY}".encode())]
    return {
        "header line over 8190 bytes": request("GET", "/v1/events", [
            *auth, (b"X-Long", MARKER * 1024)]),
        "more than 128 headers": request("GET", "/v1/events", [
            *auth, *((f"X-H{i}".encode(), MARKER) for i in range(140))]),
        "1 MB request line": request("GET", "/v1/events?q=" + MARKER.decode() * 65536, auth),
        "Content-Length with Transfer-Encoding": request("POST", "/v1/events", [
            *auth, (b"Content-Type", b"application/json"), (b"Content-Length", b"5"),
            (b"Transfer-Encoding", b"chunked")], b"0\r\n\r\n" + MARKER, content_length=False),
        "NUL byte in a header": request("GET", "/v1/events", [
            *auth, (b"X-Nul", MARKER + b"\x00" + MARKER)]),
        "API key then NUL in Authorization": request("GET", "/v1/events", [
            (b"Authorization", f"Bearer {TEST_API_KEY}".encode() + b"\x00" + MARKER)]),
        "Expect other than 100-continue": request("GET", "/v1/events", [
            *auth, (b"Expect", MARKER + b"\x80")]),
        "bad method": MARKER + b"\x01 / HTTP/1.1\r\nHost: x\r\n\r\n",
        "header without a colon": request("GET", "/v1/events", [(MARKER, b"")]).replace(
            MARKER + b": ", MARKER),
    }


@pytest.mark.parametrize("name", list(malformed_requests()))
async def test_parser_errors_answer_the_json_error_without_echo(
        ingest: ServiceProcess, name: str) -> None:
    response = await exchange(port_of(ingest), malformed_requests()[name])
    assert_contract_error(response, 400, "invalid_request")
    assert MARKER not in response.body and TEST_API_KEY.encode() not in response.body
    assert response.headers.get("connection", "").lower() == "close"


async def test_non_utf8_authorization_is_401_not_503(ingest: ServiceProcess) -> None:
    for token in (b"\xff", b"\xc3\x28" + MARKER, TEST_API_KEY.encode() + b"\xff", b"\x80" * 40):
        response = await exchange(port_of(ingest), request(
            "GET", "/v1/events", [(b"Authorization", b"Bearer " + token)]))
        assert_contract_error(response, 401, "authentication_failed")


async def test_log_has_no_traceback_no_credential_and_bounded_growth(
        ingest: ServiceProcess) -> None:
    port = port_of(ingest)
    nul = request("GET", "/v1/events", [(b"X-Nul", MARKER + b"\x00")])
    keyed = request("GET", "/v1/events", [
        (b"Authorization", f"Bearer {TEST_API_KEY}\x00".encode())])
    await exchange(port, keyed)
    before = ingest.log_path.stat().st_size
    for _round in range(10):
        await asyncio.gather(*(exchange(port, nul) for _ in range(100)))
    grown = ingest.log_path.stat().st_size - before
    assert grown < 4096, f"1,000 malformed requests grew the log by {grown} bytes"
    log = ingest.log_path.read_text(errors="replace")
    assert "Traceback" not in log and MARKER.decode() not in log
    assert not re.search(rf"Bearer\s+{re.escape(TEST_API_KEY)}", log)
    async with aiohttp.ClientSession() as http, http.get(f"{ingest.base_url}/metrics") as resp:
        text = await resp.text()
    counted = re.search(r'http_protocol_errors_total\{reason="bad_request"\} (\d+)', text)
    assert counted is not None and float(counted.group(1)) >= 1000, text[-2000:]


async def test_admin_token_never_reaches_the_admin_log(admin: ServiceProcess) -> None:
    port = port_of(admin)
    response = await exchange(port, request("GET", "/admin/v1/dead-letters", [
        (b"Authorization", f"Bearer {TEST_ADMIN_TOKEN}".encode() + b"\x00")]))
    assert_contract_error(response, 400, "invalid_request")
    response = await exchange(port, request("GET", "/admin/v1/dead-letters", [
        (b"Authorization", b"Bearer \xff" + TEST_ADMIN_TOKEN.encode())]))
    assert_contract_error(response, 401, "authentication_failed")
    log = admin.log_path.read_text(errors="replace")
    assert TEST_ADMIN_TOKEN not in log and "Traceback" not in log


@pytest.mark.parametrize("path", ["/v1/events?limit=1", "/healthz", "/no/such/route"])
async def test_every_answer_is_no_store_without_a_server_banner(
        ingest: ServiceProcess, path: str) -> None:
    async with aiohttp.ClientSession() as http, http.get(
            f"{ingest.base_url}{path}",
            headers={"Authorization": f"Bearer {TEST_API_KEY}"}) as resp:
        await resp.read()
        assert resp.headers.get("Cache-Control") == "no-store"
        assert "Server" not in resp.headers


async def test_metrics_can_move_to_their_own_port(
        service_env: ServiceEnvFactory, tmp_path_factory: pytest.TempPathFactory) -> None:
    metrics_port = free_port()
    env = service_env(METRICS_PORT=str(metrics_port))
    service = start_service("ingest", env, tmp_path_factory.mktemp("metrics") / "ingest.log")
    try:
        await service.wait_healthy_async(timeout_s=60.0)
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{service.base_url}/metrics") as resp:
                assert resp.status == 404
                assert (await resp.json())["error"]["type"] == "not_found"
            async with http.get(f"http://127.0.0.1:{metrics_port}/metrics") as resp:
                assert resp.status == 200
                assert "http_requests_total" in await resp.text()
            async with http.get(f"http://127.0.0.1:{metrics_port}/v1/events") as resp:
                assert resp.status == 404
    finally:
        await asyncio.to_thread(service.stop)


@pytest.mark.parametrize(("service", "variable", "value"), [
    ("ingest", "HTTP_IDLE_TIMEOUT_S", "0"), ("ingest", "METRICS_PORT", "70000"),
    ("dispatcher", "DENIED_TARGET_PORTS", "22-"), ("dlq_replay", "HTTP_BODY_TIMEOUT_S", "-1"),
])
async def test_a_bad_hardening_setting_exits_2_naming_it(
        service_env: ServiceEnvFactory, tmp_path_factory: pytest.TempPathFactory,
        service: ServiceName, variable: str, value: str) -> None:
    log_path = tmp_path_factory.mktemp("bad-setting") / f"{service}.log"
    process = start_service(service, service_env(**{variable: value}), log_path)
    try:
        returncode = await asyncio.to_thread(process.popen.wait, 60)
    finally:
        process.kill()
    lines = [line for line in log_path.read_text().splitlines()
             if line.strip() and not line.startswith("--- ")]
    assert returncode == 2
    assert len(lines) == 1 and f"POSTWIRE_{variable}" in lines[0], lines
