"""``postwire.client`` and ``postwire.webhooks`` against the real services: events sent with
the client are delivered, the merchant-side ``verify()`` accepts what the dispatcher signed,
an automatic key makes a retried call safe, batch results are typed, and a client that starts
before ingest is up retries its connection until ingest answers."""

from __future__ import annotations

import asyncio
import json
import threading
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from deploy.embedded.services import ServiceProcess, start_service
from postwire.client import BatchItemError, PostwireClient, SentEvent
from postwire.webhooks import WebhookVerificationError, verify
from tests.support.dispatch import FAST_ENV
from tests.support.receiver import Receiver


@pytest_asyncio.fixture(scope="module")
async def rx() -> AsyncIterator[Receiver]:
    async with Receiver() as receiver:
        yield receiver


@pytest_asyncio.fixture(scope="module")
async def services(service_env: Any, tmp_path_factory: pytest.TempPathFactory
                   ) -> AsyncIterator[ServiceProcess]:
    env = service_env(**FAST_ENV)
    logs = tmp_path_factory.mktemp("python-client")
    ingest = start_service("ingest", env, logs / "ingest.log")
    dispatcher = start_service("dispatcher", env, logs / "dispatcher.log")
    try:
        await ingest.wait_healthy_async(timeout_s=60)
        await dispatcher.wait_healthy_async(timeout_s=60)
        yield ingest
    finally:
        dispatcher.stop()
        ingest.stop()


async def test_sent_events_are_delivered_and_verify(services: ServiceProcess,
                                                    rx: Receiver) -> None:
    client = PostwireClient(services.base_url, "test-key")
    endpoint = await asyncio.to_thread(_create_endpoint, client, rx.url("/client"))
    sent = await asyncio.to_thread(client.send, "acct_client", "invoice.paid", {"amount": 1},
                                   ordering_key="inv-1")
    assert isinstance(sent, SentEvent) and sent.delivery_count == 1 and sent.replayed is False
    again = await asyncio.to_thread(client.send, "acct_client", "invoice.paid", {"amount": 1},
                                    ordering_key="inv-1", idempotency_key=sent.idempotency_key)
    assert again.id == sent.id and again.replayed is True
    await rx.wait_for(lambda: len(rx.requests_for("/client")) >= 1, timeout_s=30)
    request = rx.requests_for("/client")[0]
    payload = verify(request.body, dict(request.headers), endpoint["secret"])
    assert payload["id"] == sent.id and payload["data"] == {"amount": 1}
    with pytest.raises(WebhookVerificationError):
        verify(request.body + b" ", dict(request.headers), endpoint["secret"])
    await asyncio.sleep(0.5)
    assert len(rx.requests_for("/client")) == 1  # the replayed send delivered nothing new


def _create_endpoint(client: PostwireClient, url: str) -> dict[str, Any]:
    request = urllib.request.Request(
        client.base_url + "/v1/endpoints", method="POST",
        data=json.dumps({"account_id": "acct_client", "url": url}).encode(),
        headers={"Authorization": "Bearer test-key", "Content-Type": "application/json"})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(request, timeout=10) as response:
        result: dict[str, Any] = json.loads(response.read())
        return result


async def test_batch_results_from_the_real_api(services: ServiceProcess) -> None:
    client = PostwireClient(services.base_url, "test-key")
    results = await asyncio.to_thread(client.send_batch, [
        {"account_id": "acct_client_b", "type": "order.created", "data": {"n": 1}},
        {"account_id": "acct_client_b", "type": "bad type!", "data": {}},
    ])
    assert isinstance(results[0], SentEvent) and results[0].id.startswith("evt_")
    assert isinstance(results[1], BatchItemError) and results[1].type == "invalid_request"
    assert results[1].param is not None and "type" in results[1].param


async def test_a_client_retries_until_ingest_comes_up(service_env: Any, tmp_path: Path) -> None:
    env = service_env(**FAST_ENV)
    late = f"http://127.0.0.1:{env['POSTWIRE_INGEST_PORT']}"
    client = PostwireClient(late, "test-key", max_attempts=60, backoff_base_s=0.2,
                            backoff_max_s=0.5)
    outcome: list[object] = []
    thread = threading.Thread(target=lambda: outcome.append(
        client.send("acct_client_late", "a.b", {"late": True})), daemon=True)
    thread.start()
    await asyncio.sleep(1.0)  # the client has been refused a few times by now
    ingest = start_service("ingest", env, tmp_path / "ingest-late.log")
    try:
        await ingest.wait_healthy_async(timeout_s=60)
        await asyncio.to_thread(thread.join, 30)
    finally:
        ingest.stop()
    assert len(outcome) == 1 and isinstance(outcome[0], SentEvent), outcome
