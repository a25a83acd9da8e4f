"""Replays through the real services (ingest, dispatcher, admin as processes) to a real
receiver: the same webhook-id and body with a fresh signature by the current secret, exactly one
send for racing replays, outcomes for deleted and disabled endpoints, and auth separation."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from standardwebhooks.webhooks import Webhook

from deploy.embedded.services import ServiceName, ServiceProcess, start_service
from tests.conftest import TEST_ADMIN_TOKEN, TEST_API_KEY, ServiceEnvFactory
from tests.support.receiver import Receiver, Reply

pytestmark = pytest.mark.asyncio(loop_scope="session")

HOOK = "/hook"  # the receiver path every endpoint of this module posts to
INGEST = {"Authorization": f"Bearer {TEST_API_KEY}"}
ADMIN = {"Authorization": f"Bearer {TEST_ADMIN_TOKEN}"}


@dataclass
class Stack:
    ingest: ServiceProcess
    admin: ServiceProcess
    http: aiohttp.ClientSession

    async def call(self, service: ServiceProcess, method: str, path: str,
                   body: Any = None, headers: dict[str, str] | None = None) -> tuple[int, Any]:
        auth = ADMIN if service is self.admin else INGEST
        async with self.http.request(method, service.base_url + path, json=body,
                                     headers={**auth, **(headers or {})}) as response:
            raw = await response.read()
            return response.status, (await response.json() if raw else None)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def live(service_env: ServiceEnvFactory,
               tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    env = service_env(RETRY_SCHEDULE="0,2,2", CIRCUIT_FAILURE_THRESHOLD="1000")
    logs = tmp_path_factory.mktemp("replay-e2e")
    names: tuple[ServiceName, ...] = ("ingest", "dispatcher", "dlq_replay")
    started = [start_service(name, env, logs / f"{name}.log") for name in names]
    try:
        for service in started:
            await service.wait_healthy_async(timeout_s=60)
        async with aiohttp.ClientSession() as http:
            yield Stack(started[0], started[2], http)
    finally:
        for service in started:
            await asyncio.to_thread(service.stop)


@pytest_asyncio.fixture(loop_scope="session")
async def receiver() -> AsyncIterator[Receiver]:
    made = await Receiver().start()
    yield made
    await made.stop()


async def _endpoint(stack: Stack, receiver: Receiver) -> dict[str, Any]:
    status, endpoint = await stack.call(stack.ingest, "POST", "/v1/endpoints", {
        "account_id": f"acct_{uuid.uuid4().hex[:8]}", "url": receiver.url(HOOK)})
    assert status == 201, endpoint
    return dict(endpoint)


async def _dead_event(stack: Stack, receiver: Receiver, endpoint: dict[str, Any]) -> str:
    """Post an event the receiver refuses (400: dead at once); wait for its dead letter."""
    receiver.program(HOOK, [], default=Reply(400))
    status, event = await stack.call(stack.ingest, "POST", "/v1/events", {
        "account_id": endpoint["account_id"], "type": "invoice.paid", "data": {"total": 42}})
    assert status == 202, event
    async with asyncio.timeout(30):
        while True:
            _, page = await stack.call(
                stack.admin, "GET", f"/admin/v1/dead-letters?endpoint_id={endpoint['id']}")
            if any(d["event_id"] == event["id"] for d in page["data"]):
                return str(event["id"])
            await asyncio.sleep(0.1)


async def _replay(stack: Stack, event_id: str, **body: Any) -> dict[str, Any]:
    status, answer = await stack.call(stack.admin, "POST", f"/admin/v1/events/{event_id}/replay",
                                      {"reason": "e2e", **body})
    assert status == 202, answer
    return dict(answer)


async def test_replay_resends_same_id_and_body_signed_with_the_current_secret(
        live: Stack, receiver: Receiver) -> None:
    endpoint = await _endpoint(live, receiver)
    event_id = await _dead_event(live, receiver, endpoint)
    [first] = receiver.requests
    status, rotated = await live.call(live.ingest, "POST",
                                       f"/v1/endpoints/{endpoint['id']}/rotate-secret",
                                       {"grace_period_s": 0})
    assert status == 200, rotated
    receiver.program(HOOK, [], default=Reply(200))
    answer = await _replay(live, event_id)
    assert [d["outcome"] for d in answer["deliveries"]] == ["queued"]
    [_, again] = await receiver.wait_for_count(2)
    assert again.headers["webhook-id"] == first.headers["webhook-id"] == event_id
    assert again.body == first.body
    assert int(again.headers["webhook-timestamp"]) >= int(first.headers["webhook-timestamp"])
    assert Webhook(rotated["secret"]).verify(again.body, again.headers)["id"] == event_id
    with pytest.raises(Exception):  # noqa: B017 - the old secret no longer signs
        Webhook(endpoint["secret"]).verify(again.body, again.headers)
    async with asyncio.timeout(15):
        while True:
            _, view = await live.call(live.admin, "GET", f"/admin/v1/events/{event_id}")
            if view["deliveries"][0]["status"] == "succeeded":
                break
            await asyncio.sleep(0.1)
    delivery = view["deliveries"][0]
    assert len(delivery["attempts"]) == 2 and delivery["dead_letter"]["replay_count"] == 1
    _, audit = await live.call(live.admin, "GET", f"/admin/v1/audit-log?target={event_id}")
    assert [(e["operator"], e["action"]) for e in audit["data"]] == [("admin", "replay.event")]


async def test_two_concurrent_replays_deliver_once(live: Stack, receiver: Receiver) -> None:
    endpoint = await _endpoint(live, receiver)
    event_id = await _dead_event(live, receiver, endpoint)
    receiver.program(HOOK, [], default=Reply(200))
    answers = await asyncio.gather(_replay(live, event_id), _replay(live, event_id))
    assert sorted(a["deliveries"][0]["outcome"] for a in answers) == ["already_pending", "queued"]
    await receiver.wait_for_count(2)
    await asyncio.sleep(2.0)  # a second send would have arrived by now
    assert receiver.ids() == [event_id, event_id]


async def test_a_replay_racing_a_retry_delivers_once(live: Stack, receiver: Receiver) -> None:
    endpoint = await _endpoint(live, receiver)
    receiver.program(HOOK, [], default=Reply(503))  # retried after 2 s
    status, event = await live.call(live.ingest, "POST", "/v1/events", {
        "account_id": endpoint["account_id"], "type": "invoice.paid", "data": {}})
    assert status == 202
    await receiver.wait_for_count(1)
    receiver.program(HOOK, [], default=Reply(200))
    answer = await _replay(live, event["id"])
    assert [d["outcome"] for d in answer["deliveries"]] == ["already_pending"]
    await receiver.wait_for_count(2)
    await asyncio.sleep(3.0)
    assert receiver.ids() == [event["id"], event["id"]]  # the failure, then the one retry


async def test_deleted_and_disabled_endpoints_are_not_replayed(
        live: Stack, receiver: Receiver) -> None:
    gone, off = await _endpoint(live, receiver), await _endpoint(live, receiver)
    gone_event = await _dead_event(live, receiver, gone)
    off_event = await _dead_event(live, receiver, off)
    status, _ = await live.call(live.ingest, "DELETE", f"/v1/endpoints/{gone['id']}")
    assert status == 204
    status, _ = await live.call(live.ingest, "PATCH", f"/v1/endpoints/{off['id']}",
                                 {"enabled": False})
    assert status == 200
    receiver.program(HOOK, [], default=Reply(200))
    sent = len(receiver.requests)
    gone_answer = await _replay(live, gone_event)
    off_answer = await _replay(live, off_event)
    assert [d["outcome"] for d in gone_answer["deliveries"]] == ["endpoint_deleted"]
    assert [d["outcome"] for d in off_answer["deliveries"]] == ["endpoint_disabled"]
    await asyncio.sleep(1.0)
    assert len(receiver.requests) == sent


async def test_unknown_event_is_404(live: Stack) -> None:
    status, body = await live.call(live.admin, "POST",
                                    "/admin/v1/events/evt_01JD0000000000000000000000/replay",
                                    {"reason": "x"})
    assert (status, body["error"]["type"]) == (404, "not_found")


async def test_tokens_work_only_on_their_own_service(live: Stack) -> None:
    for service, auth in ((live.admin, INGEST), (live.ingest, ADMIN)):
        path = "/admin/v1/dead-letters" if service is live.admin else "/v1/endpoints?account_id=a"
        async with live.http.get(service.base_url + path, headers=auth) as response:
            assert response.status == 401
            assert (await response.json())["error"]["type"] == "authentication_failed"
