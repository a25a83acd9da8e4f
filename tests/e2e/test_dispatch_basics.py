"""End to end: one dispatcher process, real Postgres and broker, a real receiver on port 0.

Signatures verify with the ``standardwebhooks`` library exactly as a merchant would; retries
follow the fast test schedule ``0,0.2,0.4``; Retry-After is honoured; 4xx is dead at once,
410 disables the endpoint; an exhausted schedule leaves a dead-letter row and a message on
the ``deadletter`` topic; a redirect is a failure that is not followed; a 50 MB response is
cut after 64 KiB.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
import pytest_asyncio
from standardwebhooks.webhooks import Webhook

from tests.support.dispatch import (
    DispatcherFactory,
    Seeder,
    make_secret,
    poll,
)
from tests.support.receiver import Receiver, Reply
from tests.support.topics import read_deadletters


@pytest_asyncio.fixture(scope="module")
async def rx() -> AsyncIterator[Receiver]:
    async with Receiver() as receiver:
        yield receiver


@pytest_asyncio.fixture(scope="module", autouse=True)
async def dispatcher(dispatchers: DispatcherFactory) -> None:
    await dispatchers.start()


def _headers_for_verify(headers: dict[str, str]) -> dict[str, str]:
    return {k: headers[k] for k in ("webhook-id", "webhook-timestamp", "webhook-signature")}


async def test_signed_delivery_verifies_with_standardwebhooks(seeder: Seeder,
                                                              rx: Receiver) -> None:
    ep = await seeder.endpoint(rx.url("/sig"))
    event = await seeder.event([ep], data={"hello": "world"})
    await rx.wait_for(lambda: len(rx.requests_for("/sig")) >= 1, timeout_s=15)
    got = rx.requests_for("/sig")[0]
    assert got.body == event.body
    assert got.headers["webhook-id"] == event.id
    assert got.headers["content-type"] == "application/json"
    assert got.headers["user-agent"].startswith("Postwire/")
    assert abs(int(got.headers["webhook-timestamp"]) - got.wall) < 5
    payload = Webhook(ep.secret).verify(got.body, _headers_for_verify(got.headers))
    assert payload["id"] == event.id
    assert await seeder.wait_status(list(event.delivery_ids.values()), {"succeeded"}, 10)
    attempts = await seeder.attempts(event.delivery_ids[ep.id])
    assert [(a["attempt"], a["status_code"], a["error"]) for a in attempts] == [(1, 200, None)]
    assert attempts[0]["response_excerpt"] == "ok"


async def test_rotated_secret_sends_two_signatures_each_verifying(seeder: Seeder,
                                                                  rx: Receiver) -> None:
    old, new = make_secret(), make_secret()
    ep = await seeder.endpoint(rx.url("/rotate"), secret=new, previous_secret=old,
                               previous_expires_at=datetime.now(UTC) + timedelta(hours=1))
    await seeder.event([ep])
    await rx.wait_for(lambda: len(rx.requests_for("/rotate")) >= 1, timeout_s=15)
    got = rx.requests_for("/rotate")[0]
    entries = got.headers["webhook-signature"].split(" ")
    assert len(entries) == 2 and all(e.startswith("v1,") for e in entries)
    for secret in (new, old):
        Webhook(secret).verify(got.body, _headers_for_verify(got.headers))


async def test_retries_follow_schedule_then_succeed(seeder: Seeder, rx: Receiver) -> None:
    rx.program("/retry", [Reply(500), Reply(503)])
    ep = await seeder.endpoint(rx.url("/retry"))
    event = await seeder.event([ep])
    delivery_id = event.delivery_ids[ep.id]
    await seeder.wait_status([delivery_id], {"succeeded"}, 15)
    reqs = rx.requests_for("/retry")
    assert [r.status for r in reqs] == [500, 503, 200]
    assert {r.webhook_id for r in reqs} == {event.id}
    assert reqs[1].at - reqs[0].at >= 0.8 * 0.2
    assert reqs[2].at - reqs[1].at >= 0.8 * 0.4
    attempts = await seeder.attempts(delivery_id)
    assert [a["status_code"] for a in attempts] == [500, 503, 200]


async def test_retry_after_is_honoured(seeder: Seeder, rx: Receiver) -> None:
    rx.program("/ra", [Reply(429, headers={"Retry-After": "1"})])
    ep = await seeder.endpoint(rx.url("/ra"))
    event = await seeder.event([ep])
    await seeder.wait_status(list(event.delivery_ids.values()), {"succeeded"}, 15)
    reqs = rx.requests_for("/ra")
    assert [r.status for r in reqs] == [429, 200]
    # Retry-After 1 s is capped at the schedule's longest step (0.4 s), never shortened below it
    assert reqs[1].at - reqs[0].at >= 0.4


async def test_4xx_is_dead_at_once(seeder: Seeder, rx: Receiver) -> None:
    rx.program("/bad", [], default=Reply(400, body=b"nope"))
    ep = await seeder.endpoint(rx.url("/bad"))
    event = await seeder.event([ep])
    delivery_id = event.delivery_ids[ep.id]
    await seeder.wait_status([delivery_id], {"dead"}, 15)
    assert len(rx.requests_for("/bad")) == 1
    row = await seeder.pool.fetchrow("SELECT * FROM dead_letters WHERE delivery_id = $1",
                                     delivery_id)
    assert row["reason"] == "non_retryable_status" and row["last_status_code"] == 400


async def test_410_disables_endpoint_and_kills_its_waiting_deliveries(seeder: Seeder,
                                                                      rx: Receiver) -> None:
    rx.program("/gone", [], default=Reply(410))
    ep = await seeder.endpoint(rx.url("/gone"), max_in_flight=1)
    first = await seeder.event([ep], ordering_key="k")
    second = await seeder.event([ep], ordering_key="k")
    ids = [first.delivery_ids[ep.id], second.delivery_ids[ep.id]]
    await seeder.wait_status(ids, {"dead"}, 15)
    endpoint = await seeder.pool.fetchrow("SELECT * FROM endpoints WHERE id = $1", ep.id)
    assert endpoint["enabled"] is False and endpoint["disabled_reason"] == "gone"
    reasons = {r["delivery_id"]: r["reason"] for r in await seeder.pool.fetch(
        "SELECT delivery_id, reason FROM dead_letters WHERE delivery_id = ANY($1)", ids)}
    assert reasons == {ids[0]: "gone", ids[1]: "endpoint_disabled"}
    assert len(rx.requests_for("/gone")) == 1


async def test_exhausted_schedule_dead_letters_with_topic_message(seeder: Seeder,
                                                                  rx: Receiver) -> None:
    rx.program("/down", [], default=Reply(500, body=b"boom"))
    ep = await seeder.endpoint(rx.url("/down"))
    event = await seeder.event([ep], event_type="invoice.paid")
    delivery_id = event.delivery_ids[ep.id]
    await seeder.wait_status([delivery_id], {"dead"}, 15)
    assert len(rx.requests_for("/down")) == 3
    row = await seeder.pool.fetchrow("SELECT * FROM dead_letters WHERE delivery_id = $1",
                                     delivery_id)
    assert (row["reason"], row["attempt_count"], row["last_status_code"]) == (
        "retries_exhausted", 3, 500)
    records = await poll(lambda: read_deadletters(seeder.bootstrap, seeder.prefix, 1, 2),
                         lambda rs: any(r["delivery_id"] == delivery_id for r in rs), 15)
    record = next(r for r in records if r["delivery_id"] == delivery_id)
    assert record["_key"] == ep.id
    del record["_key"]
    assert set(record) == {"delivery_id", "event_id", "endpoint_id", "account_id", "type",
                           "reason", "attempt_count", "last_status_code", "last_error",
                           "dead_at"}
    assert (record["event_id"], record["type"], record["reason"], record["attempt_count"],
            record["last_status_code"]) == (event.id, "invoice.paid", "retries_exhausted", 3,
                                            500)
    assert record["dead_at"].endswith("Z")


async def test_redirect_is_a_failure_and_not_followed(seeder: Seeder, rx: Receiver) -> None:
    rx.program("/moved", [], default=Reply(302, headers={"Location": rx.url("/target")}))
    ep = await seeder.endpoint(rx.url("/moved"))
    event = await seeder.event([ep])
    await seeder.wait_status(list(event.delivery_ids.values()), {"dead"}, 15)
    assert len(rx.requests_for("/moved")) == 3
    assert rx.requests_for("/target") == []


@pytest.mark.parametrize("status,final", [(200, "succeeded"), (500, "dead")])
async def test_huge_response_is_cut_after_64_kib(seeder: Seeder, rx: Receiver, status: int,
                                                 final: str) -> None:
    path = f"/huge{status}"
    rx.program(path, [], default=Reply(status, body_bytes=50 * 1024 * 1024))
    ep = await seeder.endpoint(rx.url(path))
    event = await seeder.event([ep])
    delivery_id = event.delivery_ids[ep.id]
    await seeder.wait_status([delivery_id], {final}, 20)
    attempts = await seeder.attempts(delivery_id)
    assert all(a["status_code"] == status for a in attempts)
    assert all(len(a["response_excerpt"].encode()) <= 1024 for a in attempts)
    # the client hung up long before the 50 MB were written
    assert all(r.bytes_sent < 10 * 1024 * 1024 for r in rx.requests_for(path))
