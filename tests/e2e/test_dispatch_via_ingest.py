"""End to end through the public ingest API: a merchant's endpoint created with
``POST /v1/endpoints``, events accepted with ``POST /v1/events``, delivered by the dispatcher,
verified with ``standardwebhooks``, and visible again through ``GET /v1/events/{id}`` and
``GET /v1/deliveries/{id}/attempts``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest_asyncio
from standardwebhooks.webhooks import Webhook

from deploy.embedded.services import ServiceProcess, start_service
from tests.support.dispatch import FAST_ENV, poll
from tests.support.receiver import Receiver, Reply

AUTH = {"Authorization": "Bearer test-key"}


@pytest_asyncio.fixture(scope="module")
async def rx() -> AsyncIterator[Receiver]:
    async with Receiver() as receiver:
        yield receiver


@pytest_asyncio.fixture(scope="module")
async def services(service_env: Any, tmp_path_factory: Any
                   ) -> AsyncIterator[tuple[ServiceProcess, ServiceProcess]]:
    env = service_env(**FAST_ENV)
    logs = tmp_path_factory.mktemp("via-ingest")
    ingest = start_service("ingest", env, logs / "ingest.log")
    dispatcher = start_service("dispatcher", env, logs / "dispatcher.log")
    try:
        await ingest.wait_healthy_async(timeout_s=60)
        await dispatcher.wait_healthy_async(timeout_s=60)
        yield ingest, dispatcher
    finally:
        dispatcher.stop()
        ingest.stop()


async def _call(http: aiohttp.ClientSession, method: str, url: str,
                body: dict[str, Any] | None = None) -> tuple[int, Any]:
    async with http.request(method, url, json=body, headers=AUTH) as response:
        return response.status, await response.json()


async def test_events_from_the_api_are_delivered_signed_and_in_order(
        services: tuple[ServiceProcess, ServiceProcess], rx: Receiver) -> None:
    ingest, _ = services
    rx.program("/hook", [Reply(500)])
    base = ingest.base_url
    async with aiohttp.ClientSession() as http:
        status, endpoint = await _call(http, "POST", f"{base}/v1/endpoints", {
            "account_id": "acct_api", "url": rx.url("/hook"), "event_types": ["order.*"]})
        assert status == 201, endpoint
        ids = []
        for n in range(5):
            status, event = await _call(http, "POST", f"{base}/v1/events", {
                "account_id": "acct_api", "type": "order.created", "data": {"n": n},
                "ordering_key": "order-1"})
            assert status == 202 and event["delivery_count"] == 1, event
            ids.append(event["id"])

        async def delivered() -> list[str]:
            out: list[str] = []
            for event_id in ids:
                _, body = await _call(http, "GET", f"{base}/v1/events/{event_id}")
                out.extend(d["status"] for d in body["deliveries"])
            return out

        await poll(delivered, lambda s: s == ["succeeded"] * 5, 30)
        _, first = await _call(http, "GET", f"{base}/v1/events/{ids[0]}")
        delivery_id = first["deliveries"][0]["id"]
        _, attempts = await _call(http, "GET", f"{base}/v1/deliveries/{delivery_id}/attempts")
    assert [(a["attempt"], a["status_code"]) for a in attempts["data"]] == [(1, 500), (2, 200)]
    received = rx.requests_for("/hook")
    assert [r.json()["data"]["n"] for r in received] == [0, 0, 1, 2, 3, 4]
    assert [r.webhook_id for r in received] == [ids[0], *ids]
    for r in received:
        headers = {k: r.headers[k] for k in ("webhook-id", "webhook-timestamp",
                                              "webhook-signature")}
        Webhook(endpoint["secret"]).verify(r.body, headers)
    assert received[0].body == received[1].body  # byte-identical on retry
