"""The SSRF guard with real processes: a dispatcher that disallows private targets, an ingest
that allows them (the issue's stack) and one that does not, and a loopback receiver.

Unicode spellings of 127.0.0.1 (full-width digits, ideographic full stops) are what yarl, and
so aiohttp, connect to as ``127.0.0.1``: the dispatcher must refuse them and the delivery must
die at once (``ssrf_blocked``) without the receiver ever seeing a request.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from deploy.embedded.services import ServiceProcess, start_service
from tests.support.dispatch import FAST_ENV, DispatcherFactory, Seeder, poll
from tests.support.receiver import Receiver

AUTH = {"Authorization": "Bearer test-key"}
FULL_WIDTH = "\uff11\uff12\uff17.\uff10.\uff10.\uff11"
IDEOGRAPHIC = "127\u30020\u30020\u30021"


@pytest_asyncio.fixture(scope="module")
async def rx() -> AsyncIterator[Receiver]:
    async with Receiver() as receiver:
        yield receiver


@pytest_asyncio.fixture(scope="module")
async def guarded(dispatchers: DispatcherFactory) -> ServiceProcess:
    """A dispatcher with private targets disallowed."""
    return await dispatchers.start(ALLOW_PRIVATE_TARGETS="false")


@pytest_asyncio.fixture(scope="module")
async def ingests(service_env: Any, tmp_path_factory: pytest.TempPathFactory
                  ) -> AsyncIterator[tuple[ServiceProcess, ServiceProcess]]:
    """(ingest allowing private targets, ingest refusing them)."""
    logs = tmp_path_factory.mktemp("ssrf")
    lenient = start_service("ingest", service_env(**FAST_ENV, ALLOW_PRIVATE_TARGETS="true"),
                            logs / "lenient.log")
    strict = start_service("ingest", service_env(**FAST_ENV, ALLOW_PRIVATE_TARGETS="false"),
                           logs / "strict.log")
    try:
        await lenient.wait_healthy_async(timeout_s=60)
        await strict.wait_healthy_async(timeout_s=60)
        yield lenient, strict
    finally:
        strict.stop()
        lenient.stop()


def unicode_url(rx: Receiver, host: str, path: str) -> str:
    return rx.url(path).replace("127.0.0.1", host, 1)


async def _call(method: str, url: str, body: dict[str, Any] | None = None
                ) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as http, http.request(
            method, url, json=body, headers=AUTH) as response:
        return response.status, await response.json()


@pytest.mark.parametrize("host", [FULL_WIDTH, IDEOGRAPHIC], ids=["full-width", "ideographic"])
async def test_dispatcher_refuses_unicode_loopback_and_the_delivery_dies_at_once(
        seeder: Seeder, guarded: ServiceProcess, rx: Receiver, host: str) -> None:
    """Stored as typed (an endpoint from before canonical storage): refused at connect time."""
    path = f"/ssrf-{'fw' if host == FULL_WIDTH else 'id'}"
    endpoint = await seeder.endpoint(unicode_url(rx, host, path))
    event = await seeder.event([endpoint])
    [delivery_id] = event.delivery_ids.values()
    await seeder.wait_status([delivery_id], {"dead"}, timeout_s=30)
    attempts = await seeder.attempts(delivery_id)
    assert len(attempts) == 1, attempts
    assert attempts[0]["error"] == "ssrf_blocked", attempts[0]
    reason = await seeder.pool.fetchval(
        "SELECT reason FROM dead_letters WHERE delivery_id = $1", delivery_id)
    assert reason == "ssrf_blocked"
    assert rx.requests_for(path) == []


async def test_lenient_ingest_stores_the_canonical_host_and_the_guard_still_refuses(
        ingests: tuple[ServiceProcess, ServiceProcess], guarded: ServiceProcess,
        seeder: Seeder, rx: Receiver) -> None:
    lenient, _ = ingests
    status, endpoint = await _call("POST", f"{lenient.base_url}/v1/endpoints", {
        "account_id": "acct_ssrf", "url": unicode_url(rx, FULL_WIDTH, "/ssrf-api")})
    assert status == 201, endpoint
    assert endpoint["url"] == rx.url("/ssrf-api")
    status, event = await _call("POST", f"{lenient.base_url}/v1/events", {
        "account_id": "acct_ssrf", "type": "t.ssrf", "data": {}})
    assert status == 202 and event["delivery_count"] == 1, event

    async def deliveries() -> list[dict[str, Any]]:
        _, body = await _call("GET", f"{lenient.base_url}/v1/events/{event['id']}")
        result: list[dict[str, Any]] = body["deliveries"]
        return result

    [delivery] = await poll(deliveries, lambda ds: bool(ds) and ds[0]["status"] == "dead", 30)
    assert delivery["attempt_count"] == 1 and delivery["next_attempt_at"] is None, delivery
    assert rx.requests_for("/ssrf-api") == []


@pytest.mark.parametrize("host", [FULL_WIDTH, IDEOGRAPHIC, "127.0.0.1"])
async def test_strict_ingest_refuses_every_spelling(
        ingests: tuple[ServiceProcess, ServiceProcess], rx: Receiver, host: str) -> None:
    _, strict = ingests
    status, body = await _call("POST", f"{strict.base_url}/v1/endpoints", {
        "account_id": "acct_ssrf", "url": unicode_url(rx, host, "/x")})
    assert status == 400 and body["error"]["param"] == "url", body
    assert "loopback" in body["error"]["message"]


async def test_re_enabling_a_private_endpoint_is_refused(
        ingests: tuple[ServiceProcess, ServiceProcess], seeder: Seeder, rx: Receiver) -> None:
    _, strict = ingests
    endpoint = await seeder.endpoint(unicode_url(rx, IDEOGRAPHIC, "/off"), enabled=False)
    url = f"{strict.base_url}/v1/endpoints/{endpoint.id}"
    status, body = await _call("PATCH", url, {"enabled": True})
    assert status == 400 and body["error"]["param"] == "url", body
    status, body = await _call("GET", url)
    assert status == 200 and body["enabled"] is False, body
    status, body = await _call("PATCH", url, {"enabled": False, "description": "still off"})
    assert status == 200 and body["description"] == "still off", body


@pytest.mark.parametrize("port", [22, 25, 6379])
async def test_denied_ports_are_refused_even_where_private_targets_are_allowed(
        ingests: tuple[ServiceProcess, ServiceProcess], port: int) -> None:
    lenient, _ = ingests
    status, body = await _call("POST", f"{lenient.base_url}/v1/endpoints", {
        "account_id": "acct_ports", "url": f"http://127.0.0.1:{port}/hook"})
    assert status == 400 and body["error"]["param"] == "url", body
    assert f"port {port}" in body["error"]["message"]
