"""Slow, idle and greedy clients against a real ingest process (raw sockets).

Idle and keep-alive connections, slowloris headers and trickling or silent chunked bodies are
cut off by their timeouts; 1,100 idle connections under ``ulimit -n 1024`` do not stop
legitimate requests; concurrent large bodies are bounded by the in-flight byte budget.
"""

from __future__ import annotations

import asyncio
import re
import resource
from collections.abc import Iterator

import aiohttp
import orjson
import pytest

from deploy.embedded.services import ServiceProcess, start_service
from tests.conftest import TEST_API_KEY, ServiceEnvFactory
from tests.support.raw_http import closed_within, read_response, request

AUTH = (b"Authorization", f"Bearer {TEST_API_KEY}".encode())
JSON = (b"Content-Type", b"application/json")


def port_of(service: ServiceProcess) -> int:
    return int(service.base_url.rsplit(":", 1)[1])


@pytest.fixture(scope="module")
def short_idle(service_env: ServiceEnvFactory,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    """Ingest closing idle connections after 1 s (headers and bodies get 30 s)."""
    env = service_env(HTTP_IDLE_TIMEOUT_S="1", HTTP_HEADER_TIMEOUT_S="30",
                      HTTP_BODY_TIMEOUT_S="30")
    service = start_service("ingest", env, tmp_path_factory.mktemp("idle") / "ingest.log")
    try:
        service.wait_healthy(timeout_s=60.0)
        yield service
    finally:
        service.stop()


@pytest.fixture(scope="module")
def short_reads(service_env: ServiceEnvFactory,
                tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    """Ingest giving headers and bodies 1 s each (idle connections get 30 s)."""
    env = service_env(HTTP_IDLE_TIMEOUT_S="30", HTTP_HEADER_TIMEOUT_S="1",
                      HTTP_BODY_TIMEOUT_S="1", HTTP_MAX_INFLIGHT_BODY_BYTES="1048576")
    service = start_service("ingest", env, tmp_path_factory.mktemp("reads") / "ingest.log")
    try:
        service.wait_healthy(timeout_s=60.0)
        yield service
    finally:
        service.stop()


async def test_idle_connection_is_closed(short_idle: ServiceProcess) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port_of(short_idle))
    try:
        closed_after = await closed_within(reader, 10.0)
    finally:
        writer.close()
    assert closed_after is not None and 0.5 <= closed_after <= 5.0, closed_after


async def test_keep_alive_connection_is_closed_after_its_response(
        short_idle: ServiceProcess) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port_of(short_idle))
    try:
        writer.write(request("GET", "/healthz"))
        response = await read_response(reader)
        assert response.status == 200 and "close" not in response.headers.get("connection", "")
        closed_after = await closed_within(reader, 10.0)
    finally:
        writer.close()
    assert closed_after is not None and 0.5 <= closed_after <= 5.0, closed_after


async def test_slowloris_headers_are_cut_off(short_reads: ServiceProcess) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port_of(short_reads))
    writer.write(b"GET /v1/events HTTP/1.1\r\nHost: x\r\n")
    sent = 0
    try:
        closing = asyncio.create_task(closed_within(reader, 10.0))
        while not closing.done() and sent < 200:
            try:
                writer.write(b"X")  # one header byte at a time, never finishing the line
                await writer.drain()
            except ConnectionError:
                break
            sent += 1
            await asyncio.sleep(0.1)
        closed_after = await closing
    finally:
        writer.close()
    assert closed_after is not None and closed_after <= 5.0, closed_after
    assert sent < 60, f"the server accepted {sent} header bytes at 10/s"


@pytest.mark.parametrize("trickle", [True, False], ids=["trickling", "silent"])
async def test_slow_chunked_body_is_refused_and_closed(
        short_reads: ServiceProcess, trickle: bool) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port_of(short_reads))
    writer.write(request("POST", "/v1/events", [
        AUTH, JSON, (b"Transfer-Encoding", b"chunked")], content_length=False))
    writer.write(b"1\r\n{\r\n")
    try:
        answer = asyncio.create_task(read_response(reader, timeout_s=10.0))
        while trickle and not answer.done():
            try:
                writer.write(b"1\r\n \r\n")
                await writer.drain()
            except ConnectionError:
                break
            await asyncio.sleep(0.2)
        response = await answer
        assert response.status == 400, response
        error = orjson.loads(response.body)["error"]
        assert error["type"] == "invalid_request" and "did not arrive" in error["message"]
        assert await closed_within(reader, 15.0) is not None
    finally:
        writer.close()


async def _hold_body(port: int, declared: int, sent: int) -> asyncio.StreamWriter:
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request("POST", "/v1/events/batch", [
        AUTH, JSON, (b"Content-Length", str(declared).encode())], content_length=False))
    writer.write(b" " * sent)
    await writer.drain()
    return writer


async def test_inflight_body_budget_refuses_the_second_large_body(
        short_reads: ServiceProcess) -> None:
    """Budget 1 MiB: a 900 KB body in progress makes a concurrent 300 KB one a 429; a body
    alone is admitted over the budget, up to the route's own limit."""
    port = port_of(short_reads)
    holder = await _hold_body(port, 900_000, 1000)
    await asyncio.sleep(0.2)
    try:
        async with aiohttp.ClientSession(short_reads.base_url) as http:
            headers = {"Authorization": f"Bearer {TEST_API_KEY}"}
            events = {"events": [{"account_id": "acct_budget", "type": "t.x",
                                  "data": {"blob": "x" * 50_000}} for _ in range(6)]}
            async with http.post("/v1/events/batch", json=events, headers=headers) as resp:
                assert resp.status == 429, await resp.text()
                assert resp.headers.get("Retry-After") == "1"
                assert (await resp.json())["error"]["type"] == "rate_limited"
            holder.close()
            await asyncio.sleep(0.3)
            big = {"events": [{"account_id": "acct_budget", "type": "t.x",
                               "data": {"blob": "y" * 250_000}} for _ in range(6)]}
            async with http.post("/v1/events/batch", json=big, headers=headers) as resp:
                assert resp.status == 202, await resp.text()
                results = (await resp.json())["data"]
                assert len(results) == 6 and all("id" in r for r in results), results
    finally:
        holder.close()


async def test_idle_connection_flood_under_ulimit_1024_leaves_requests_working(
        service_env: ServiceEnvFactory, tmp_path_factory: pytest.TempPathFactory) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard))
    try:  # the child inherits the open-files limit of 1024
        service = start_service("ingest", service_env(),
                                tmp_path_factory.mktemp("flood") / "ingest.log")
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    writers: list[asyncio.StreamWriter] = []
    try:
        await service.wait_healthy_async(timeout_s=60.0)
        port = port_of(service)
        for _ in range(1100):
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writers.append(writer)
        await asyncio.sleep(0.5)
        headers = {"Authorization": f"Bearer {TEST_API_KEY}"}
        async with aiohttp.ClientSession(service.base_url, headers=headers) as http:
            for n in range(20):
                event = {"account_id": "acct_flood", "type": "t.x", "data": {"n": n}}
                async with http.post("/v1/events", json=event) as resp:
                    assert resp.status == 202, await resp.text()
            async with http.get("/metrics") as resp:
                text = await resp.text()
        evicted = re.search(r'http_protocol_errors_total\{reason="evicted_idle"\} (\d+)', text)
        assert evicted is not None and float(evicted.group(1)) >= 1100 - 896, text[-1500:]
        assert "Traceback" not in service.log_path.read_text(errors="replace")
    finally:
        for writer in writers:
            writer.close()
        await asyncio.to_thread(service.stop)


async def test_over_the_limit_with_nothing_idle_is_refused_503(
        service_env: ServiceEnvFactory, tmp_path_factory: pytest.TempPathFactory) -> None:
    """16 connections all busy uploading: the 17th gets the contract's 503 and is closed;
    once they finish, new connections are served again."""
    env = service_env(HTTP_MAX_CONNECTIONS="16", HTTP_BODY_TIMEOUT_S="30")
    service = start_service("ingest", env, tmp_path_factory.mktemp("full") / "ingest.log")
    busy: list[asyncio.StreamWriter] = []
    try:
        await service.wait_healthy_async(timeout_s=60.0)
        port = port_of(service)
        for _ in range(16):
            busy.append(await _hold_body(port, 10_000, 10))
        await asyncio.sleep(0.3)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(request("GET", "/healthz"))
            response = await read_response(reader)
        finally:
            writer.close()
        assert response.status == 503, response
        assert orjson.loads(response.body)["error"]["type"] == "unavailable"
        for holder in busy:
            holder.close()
        await asyncio.sleep(0.5)
        async with aiohttp.ClientSession() as http, http.get(f"{service.base_url}/metrics") as resp:
            assert resp.status == 200
            assert 'http_protocol_errors_total{reason="over_capacity"} 1.0' in await resp.text()
        assert "Traceback" not in service.log_path.read_text(errors="replace")
    finally:
        for holder in busy:
            holder.close()
        await asyncio.to_thread(service.stop)
