"""Exact payloads end to end, as a property: generated JSON documents (integers of any size,
exponents, ``-0``, escapes, unicode, nesting; hypothesis) spelled as a producer might, sent
through real ingest and dispatcher processes to a receiver. What the receiver gets holds the
producer's ``data`` bytes unchanged and parses to the same value (exact integers), on the
first attempt and, byte-identical, on the retry and on an operator's replay.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest_asyncio
from hypothesis import HealthCheck, Phase, given, settings

from deploy.embedded.services import ServiceProcess, start_service
from shared.core.event_body import stored_data
from tests.conftest import TEST_ADMIN_TOKEN, TEST_API_KEY
from tests.support.dispatch import FAST_ENV, poll
from tests.support.json_documents import Doc, exact, spelled_objects
from tests.support.receiver import Received, Receiver, Reply

AUTH = {"Authorization": f"Bearer {TEST_API_KEY}", "Content-Type": "application/json"}
EXAMPLES = 40


def _generated(count: int) -> list[tuple[dict[str, Doc], bytes]]:
    """``count`` documents with their spellings, from hypothesis' generator (no shrinking
    here: the unit-level properties shrink; this one checks the whole path)."""
    found: list[tuple[dict[str, Doc], bytes]] = []

    @settings(max_examples=count, database=None, deadline=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(spelled_objects(max_size=6))
    def collect(example: tuple[dict[str, Doc], bytes]) -> None:
        found.append(example)

    collect()
    return found


@pytest_asyncio.fixture(scope="module")
async def rx() -> AsyncIterator[Receiver]:
    async with Receiver() as receiver:
        yield receiver


@pytest_asyncio.fixture(scope="module")
async def services(service_env: Any, tmp_path_factory: Any
                   ) -> AsyncIterator[tuple[ServiceProcess, ServiceProcess]]:
    """Ingest, dispatcher and admin processes; yields (ingest, admin)."""
    # every first attempt fails on purpose: keep the endpoint's circuit closed
    env = service_env(**{**FAST_ENV, "CIRCUIT_FAILURE_THRESHOLD": "1000"})
    logs = tmp_path_factory.mktemp("exact-payloads")
    started = [start_service(name, env, logs / f"{name}.log")
               for name in ("ingest", "dispatcher", "dlq_replay")]
    try:
        for service in started:
            await service.wait_healthy_async(timeout_s=60)
        yield started[0], started[2]
    finally:
        for service in reversed(started):
            service.stop()


@pytest_asyncio.fixture(scope="module")
async def ingest(services: tuple[ServiceProcess, ServiceProcess]) -> ServiceProcess:
    return services[0]


def _fail_first_attempt() -> Any:
    seen: set[str] = set()

    def reply(request: Received) -> Reply:
        first = request.webhook_id not in seen
        seen.add(request.webhook_id)
        return Reply(500 if first else 200)

    return reply


async def test_generated_documents_arrive_exactly_as_sent(ingest: ServiceProcess,
                                                          rx: Receiver) -> None:
    examples = _generated(EXAMPLES)
    rx.respond_with("/exact", _fail_first_attempt())
    async with aiohttp.ClientSession(headers=AUTH) as http:
        async with http.post(f"{ingest.base_url}/v1/endpoints", json={
                "account_id": "acct_exact", "url": rx.url("/exact"),
                "event_types": ["exact.*"]}) as response:
            assert response.status == 201, await response.text()
        sent: dict[str, tuple[dict[str, Doc], bytes]] = {}
        half = len(examples) // 2
        for doc, text in examples[:half]:  # single POSTs
            body = b'{"account_id":"acct_exact","type":"exact.single","data":' + text + b"}"
            async with http.post(f"{ingest.base_url}/v1/events", data=body) as response:
                raw = await response.read()
                assert response.status == 202, raw
                sent[orjson.loads(raw)["id"]] = (doc, text)
        items = [b'{"account_id":"acct_exact","type":"exact.batch","data":' + t + b"}"
                 for _, t in examples[half:]]
        async with http.post(f"{ingest.base_url}/v1/events/batch",
                             data=b'{"events": [' + b",\n".join(items) + b"]}") as response:
            raw = await response.read()
            assert response.status == 202, raw
            for item, example in zip(orjson.loads(raw)["data"], examples[half:], strict=True):
                sent[item["id"]] = example

    def delivered() -> bool:
        ok = {r.webhook_id for r in rx.requests_for("/exact") if r.status == 200}
        return ok >= set(sent)

    try:
        await rx.wait_for(delivered, timeout_s=60)
    except TimeoutError:
        ok = {r.webhook_id for r in rx.requests_for("/exact") if r.status == 200}
        missing = sorted(set(sent) - ok)
        raise AssertionError(f"{len(missing)} of {len(sent)} events not delivered, e.g. "
                             f"{[sent[m][1][:200] for m in missing[:3]]}") from None
    by_event: dict[str, list[Received]] = {}
    for request in rx.requests_for("/exact"):
        by_event.setdefault(request.webhook_id, []).append(request)
    for event_id, (doc, text) in sent.items():
        attempts = by_event[event_id]
        assert len(attempts) >= 2, event_id
        assert len({a.body for a in attempts}) == 1, f"attempts of {event_id} differ"
        body = attempts[0].body
        assert stored_data(body) == text, (event_id, text)
        assert exact(body)["data"] == doc, (event_id, text)


EXACT = (b'{ "n": 123456789012345678901234567890, "z": -0.0, "e": 1E+400,'
         b' "u": "\\u00e9\\ud83d\\ude00", "nul": "\\u0000" }')


async def test_a_replayed_dead_letter_sends_the_same_exact_bytes(
        services: tuple[ServiceProcess, ServiceProcess], rx: Receiver) -> None:
    ingest, admin = services
    dead = {"on": True}
    rx.respond_with("/replayed", lambda _: Reply(400 if dead["on"] else 200))
    async with aiohttp.ClientSession(headers=AUTH) as http:
        async with http.post(f"{ingest.base_url}/v1/endpoints", json={
                "account_id": "acct_replay", "url": rx.url("/replayed")}) as response:
            assert response.status == 201, await response.text()
        body = b'{"account_id":"acct_replay","type":"exact.replay","data":' + EXACT + b"}"
        async with http.post(f"{ingest.base_url}/v1/events", data=body) as response:
            assert response.status == 202, await response.text()
            event_id = (await response.json())["id"]

        async def status() -> str:
            async with http.get(f"{ingest.base_url}/v1/events/{event_id}") as response:
                return str((await response.json())["deliveries"][0]["status"])

        await poll(status, lambda s: s == "dead", 60)
        dead["on"] = False
        async with http.post(f"{admin.base_url}/admin/v1/events/{event_id}/replay",
                             json={"reason": "exact payload e2e"},
                             headers={"Authorization": f"Bearer {TEST_ADMIN_TOKEN}"}) as response:
            assert response.status == 202, await response.text()
        await poll(status, lambda s: s == "succeeded", 60)
    first, replayed = rx.requests_for("/replayed")
    assert first.body == replayed.body and first.webhook_id == replayed.webhook_id == event_id
    assert stored_data(replayed.body) == EXACT
    assert exact(replayed.body)["data"]["n"] == 123456789012345678901234567890
