"""The Events API over real HTTP against real Postgres and broker (docs/api.md, "Events").

Routes, every error case, idempotency (including concurrent duplicates in one group commit and
in two concurrent ones), listing, attempts, and a real database failure.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import asyncpg
import orjson
import pytest

from services.ingest.event_validation import batch_body_limit, parse_event
from services.ingest.group_commit import EventWriter, GroupCommitter
from services.ingest.idempotency import Accepted, IdempotencyPurger
from shared.core.errors import Unavailable
from shared.core.ids import is_valid_id, new_id
from shared.core.timefmt import format_ts, parse_ts, utcnow
from tests.conftest import TEST_ADMIN_TOKEN
from tests.support.dispatch import poll
from tests.support.ingest_app import (
    Ingest,
    assert_error,
    create_endpoint,
    new_account,
)

MAX_PAYLOAD = 4096
RESULT_FIELDS = {"id", "account_id", "type", "ordering_key", "created_at", "delivery_count"}


INGEST_ENV = {"MAX_PAYLOAD_BYTES": str(MAX_PAYLOAD)}


async def post(api: Ingest, path: str, body: Any, *, key: str | None = None,
               raw: bytes | None = None) -> tuple[int, dict[str, str], bytes]:
    """POST JSON (or ``raw`` bytes); returns status, headers and the exact body bytes."""
    headers = {**api.auth, "Content-Type": "application/json"}
    if key is not None:
        headers["Idempotency-Key"] = key
    data = raw if raw is not None else orjson.dumps(body)
    async with api.client.post(path, data=data, headers=headers) as response:
        return response.status, dict(response.headers), await response.read()


def event(account: str, **extra: Any) -> dict[str, Any]:
    return {"account_id": account, "type": "invoice.paid", "data": {"amount": 1}, **extra}


async def test_event_is_committed_with_its_webhook_body_before_202(
        api: Ingest, db: asyncpg.Connection) -> None:
    account = new_account()
    endpoint = await create_endpoint(api, account_id=account)
    status, headers, raw = await post(api, "/v1/events",
                                      event(account, data={"n": "\u00e9"}, ordering_key="o1"))
    assert status == 202, raw
    body = orjson.loads(raw)
    assert set(body) == RESULT_FIELDS and "Idempotent-Replayed" not in headers
    assert is_valid_id(body["id"], "evt") and body["delivery_count"] == 1
    assert body["ordering_key"] == "o1" and parse_ts(body["created_at"])
    row = await db.fetchrow("SELECT * FROM events WHERE id = $1", body["id"])
    assert row is not None and format_ts(row["created_at"]) == body["created_at"]
    assert bytes(row["body"]) == orjson.dumps({
        "id": body["id"], "type": "invoice.paid", "timestamp": body["created_at"],
        "account_id": account, "data": {"n": "\u00e9"}})
    delivery = await db.fetchrow("SELECT * FROM deliveries WHERE event_id = $1", body["id"])
    assert delivery["endpoint_id"] == endpoint["id"] and delivery["status"] == "pending"
    assert delivery["sequence"] == 1 and delivery["next_attempt_at"] == row["created_at"]


async def test_get_event_shows_data_and_deliveries(api: Ingest) -> None:
    account = new_account()
    endpoint = await create_endpoint(api, account_id=account)
    _, _, raw = await post(api, "/v1/events", event(account, data={"x": [1, {"y": None}]}))
    created = orjson.loads(raw)
    status, got = await api.call("GET", f"/v1/events/{created['id']}")
    assert status == 200
    assert {k: got[k] for k in RESULT_FIELDS} == created
    assert got["data"] == {"x": [1, {"y": None}]}
    [delivery] = got["deliveries"]
    assert is_valid_id(delivery["id"], "dlv") and delivery["endpoint_id"] == endpoint["id"]
    assert delivery["status"] == "pending" and delivery["attempt_count"] == 0
    assert delivery["last_attempt_at"] is None and delivery["last_status_code"] is None
    assert delivery["next_attempt_at"] == created["created_at"]


@pytest.mark.parametrize("authorization", [
    None, "Bearer wrong-key", "Basic dGVzdC1rZXk6", f"Bearer {TEST_ADMIN_TOKEN}"])
async def test_without_the_api_key_is_401(api: Ingest, authorization: str | None) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    for method, path in (("POST", "/v1/events"), ("POST", "/v1/events/batch"),
                         ("GET", "/v1/events?account_id=a"), ("GET", f"/v1/events/{new_id('evt')}"),
                         ("GET", f"/v1/deliveries/{new_id('dlv')}/attempts")):
        async with api.client.request(method, path, json=event("a"), headers=headers) as resp:
            assert_error(resp.status, await resp.json(), 401, "authentication_failed")


@pytest.mark.parametrize(("raw", "param"), [
    (b"", None), (b"not json", None), (b"[1]", None), (b'"x"', None),
    (b'{"account_id":"a","type":"t","data":{},"colour":1}', "colour"),
    (b'{"account_id":"a","data":{}}', "type"),
    (b'{"account_id":"a b","type":"t","data":{}}', "account_id"),
    (b'{"account_id":"a","type":"t","data":[]}', "data"),
    (b'{"account_id":"a","type":"t","data":{},"ordering_key":""}', "ordering_key"),
])
async def test_invalid_bodies_are_400(api: Ingest, raw: bytes, param: str | None) -> None:
    status, _, body = await post(api, "/v1/events", None, raw=raw)
    assert_error(status, orjson.loads(body), 400, "invalid_request", param)


@pytest.mark.parametrize("key", ["", "k" * 256, "caf\u00e9"])
async def test_bad_idempotency_key_is_400(api: Ingest, key: str) -> None:
    headers = {**api.auth, "Idempotency-Key": key}
    async with api.client.post("/v1/events", json=event("a"), headers=headers) as resp:
        assert_error(resp.status, await resp.json(), 400, "invalid_request", "Idempotency-Key")


async def test_other_content_type_is_415(api: Ingest) -> None:
    for path in ("/v1/events", "/v1/events/batch"):
        async with api.client.post(path, data=orjson.dumps(event("a")),
                                   headers={**api.auth, "Content-Type": "text/plain"}) as resp:
            assert_error(resp.status, await resp.json(), 415, "unsupported_media_type")


async def test_oversized_body_is_413_with_content_length_and_chunked(
        api: Ingest, db: asyncpg.Connection) -> None:
    account = new_account()
    big = orjson.dumps(event(account, data={"pad": "x" * MAX_PAYLOAD}))
    status, _, raw = await post(api, "/v1/events", None, raw=big)
    assert_error(status, orjson.loads(raw), 413, "payload_too_large")

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(big), 512):
            yield big[start:start + 512]

    headers = {**api.auth, "Content-Type": "application/json"}
    async with api.client.post("/v1/events", data=chunks(), headers=headers) as resp:
        assert_error(resp.status, await resp.json(), 413, "payload_too_large")
    too_big_batch = b" " * (batch_body_limit(MAX_PAYLOAD) + 1)
    status, _, raw = await post(api, "/v1/events/batch", None, raw=too_big_batch)
    assert_error(status, orjson.loads(raw), 413, "payload_too_large")
    assert await db.fetchval("SELECT count(*) FROM events WHERE account_id = $1", account) == 0


@pytest.mark.parametrize("path", [
    "/v1/events/evt_nope", "/v1/events/" + new_id("evt"), "/v1/events/" + new_id("dlv"),
    "/v1/deliveries/dlv_nope/attempts", f"/v1/deliveries/{new_id('dlv')}/attempts",
])
async def test_malformed_or_unknown_ids_are_404(api: Ingest, path: str) -> None:
    status, data = await api.call("GET", path)
    assert_error(status, data, 404, "not_found")


@pytest.mark.parametrize(("query", "param"), [
    ("account_id=", "account_id"), ("account_id=a.b", "account_id"),
    ("account_id=a&limit=0", "limit"),
    ("account_id=a&limit=101", "limit"), ("account_id=a&cursor=junk", "cursor"),
    ("account_id=a&cursor=eyJrIjoiZXZlbnRzIiwidiI6W119", "cursor"),  # a forged, empty key
    ("account_id=a&since=yesterday", "since"), ("account_id=a&until=2026-01-01", "until"),
    ("account_id=a&type=bad%20type", "type"), ("account_id=a&colour=red", "colour"),
    ("account_id=a&account_id=b", "account_id"),
])
async def test_list_query_errors_are_400(api: Ingest, query: str, param: str) -> None:
    status, data = await api.call("GET", f"/v1/events?{query}")
    assert_error(status, data, 400, "invalid_request", param)


async def test_idempotent_replay_conflict_and_scope(api: Ingest, db: asyncpg.Connection) -> None:
    account = new_account()
    status, headers, first = await post(api, "/v1/events", event(account), key="order-1")
    assert status == 202 and "Idempotent-Replayed" not in headers
    respaced = b'{ "data" : {"amount": 1},\n "type": "invoice.paid", "account_id": "%s" }' % (
        account.encode())
    for raw in (None, respaced):
        status, headers, again = await post(api, "/v1/events", event(account), key="order-1",
                                            raw=raw)
        assert (status, again, headers["Idempotent-Replayed"]) == (202, first, "true")
    status, _, raw = await post(api, "/v1/events", event(account, data={"amount": 2}),
                                key="order-1")
    assert_error(status, orjson.loads(raw), 409, "idempotency_conflict", "Idempotency-Key")
    other = new_account()
    status, headers, elsewhere = await post(api, "/v1/events", event(other), key="order-1")
    assert status == 202 and "Idempotent-Replayed" not in headers
    assert orjson.loads(elsewhere)["id"] != orjson.loads(first)["id"]
    assert await db.fetchval("SELECT count(*) FROM events WHERE account_id = $1", account) == 1


async def test_twenty_concurrent_duplicates_store_one_event(
        api: Ingest, db: asyncpg.Connection) -> None:
    account = new_account()
    await create_endpoint(api, account_id=account)
    results = await asyncio.gather(*(post(api, "/v1/events", event(account), key="dup")
                                     for _ in range(20)))
    assert {status for status, _, _ in results} == {202}
    assert len({body for _, _, body in results}) == 1
    replayed = [h.get("Idempotent-Replayed") for _, h, _ in results]
    assert replayed.count("true") == 19 and replayed.count(None) == 1
    assert await db.fetchval("SELECT count(*) FROM events WHERE account_id = $1", account) == 1
    assert await db.fetchval("SELECT count(*) FROM deliveries WHERE account_id = $1",
                             account) == 1


async def test_duplicates_in_two_concurrent_group_commits_store_one_event(
        api: Ingest, db: asyncpg.Connection) -> None:
    account = new_account()
    writer = EventWriter(api.ctx, api.cache)
    duplicate = parse_event(orjson.dumps(event(account)), max_data_bytes=MAX_PAYLOAD,
                            idempotency_key="k2")
    try:
        outcomes = await asyncio.gather(*(writer.commit([duplicate]) for _ in range(4)))
    finally:
        await writer.close()
    accepted = [o for [o] in outcomes if isinstance(o, Accepted)]
    assert len(accepted) == 4 and len({o.body for o in accepted}) == 1
    assert sorted(o.replayed for o in accepted) == [False, True, True, True]
    assert await db.fetchval("SELECT count(*) FROM events WHERE account_id = $1", account) == 1


async def test_an_expired_key_is_replaced(api: Ingest, db: asyncpg.Connection) -> None:
    account = new_account()
    _, _, first = await post(api, "/v1/events", event(account), key="daily")
    await db.execute("UPDATE idempotency_keys SET created_at = $2 WHERE account_id = $1",
                     account, utcnow() - timedelta(hours=24, seconds=1))
    status, headers, second = await post(api, "/v1/events", event(account, data={"v": 2}),
                                         key="daily")
    assert status == 202 and "Idempotent-Replayed" not in headers
    assert orjson.loads(second)["id"] != orjson.loads(first)["id"]
    _, headers, third = await post(api, "/v1/events", event(account, data={"v": 2}), key="daily")
    assert third == second and headers["Idempotent-Replayed"] == "true"


async def test_the_purger_deletes_expired_keys_in_the_background(
        api: Ingest, db: asyncpg.Connection) -> None:
    account = new_account()
    for key in ("old-1", "old-2", "fresh"):
        assert (await post(api, "/v1/events", event(account), key=key))[0] == 202
    await db.execute("UPDATE idempotency_keys SET created_at = $2"
                     " WHERE account_id = $1 AND key LIKE 'old-%'",
                     account, utcnow() - timedelta(hours=24, seconds=1))
    purger = IdempotencyPurger(api.ctx.pool, interval_s=0.01)
    purger.start()
    try:
        await poll(lambda: db.fetchval("SELECT count(*) FROM idempotency_keys WHERE"
                                       " account_id = $1 AND key LIKE 'old-%'", account),
                   lambda left: left == 0, timeout_s=10, interval_s=0.02)
    finally:
        await purger.stop()
    assert await db.fetchval("SELECT array_agg(key) FROM idempotency_keys"
                             " WHERE account_id = $1", account) == ["fresh"]


async def test_batch_answers_each_item_in_order(api: Ingest, db: asyncpg.Connection) -> None:
    account = new_account()
    _, _, single = await post(api, "/v1/events", event(account), key="was-single")
    items = [
        event(account, ordering_key="o"), {"account_id": account, "type": "x y", "data": {}},
        event(account, idempotency_key="b1"), event(account, idempotency_key="b1"),
        event(account, idempotency_key="b1", data={"other": True}),
        event(account, idempotency_key="was-single"), 7,
        event(account, data={"pad": "x" * MAX_PAYLOAD}),
    ]
    status, _, raw = await post(api, "/v1/events/batch", {"events": items})
    assert status == 202, raw
    data = orjson.loads(raw)["data"]
    assert set(data[0]) == RESULT_FIELDS and data[0]["ordering_key"] == "o"
    assert data[1]["error"]["param"] == "events[1].type"
    assert data[2] == data[3] and set(data[2]) == RESULT_FIELDS
    assert data[4]["error"]["type"] == "idempotency_conflict"
    assert data[4]["error"]["param"] == "events[4].idempotency_key"
    assert orjson.dumps(data[5]) == single
    assert data[6]["error"]["param"] == "events[6]"
    assert data[7]["error"] == {**data[7]["error"], "type": "payload_too_large",
                                "param": "events[7].data"}
    assert await db.fetchval("SELECT count(*) FROM events WHERE account_id = $1", account) == 3


async def test_batch_refuses_an_idempotency_key_header(api: Ingest) -> None:
    status, _, raw = await post(api, "/v1/events/batch", {"events": [event("a")]}, key="k")
    assert_error(status, orjson.loads(raw), 400, "invalid_request", "Idempotency-Key")


async def _walk(api: Ingest, account: str, limit: int) -> list[str]:
    """Every id the cursors lead to; one new event is inserted before each next page."""
    seen: list[str] = []
    cursor: str | None = None
    while True:
        suffix = f"&cursor={cursor}" if cursor else ""
        status, page = await api.call("GET", f"/v1/events?account_id={account}&limit={limit}"
                                             f"{suffix}")
        assert status == 200, page
        assert len(page["data"]) <= limit
        seen.extend(item["id"] for item in page["data"])
        assert page["has_more"] == (page["next_cursor"] is not None)
        if not page["has_more"]:
            return seen
        cursor = page["next_cursor"]
        assert (await post(api, "/v1/events", event(account)))[0] == 202


async def test_list_walks_every_event_once_while_inserting(api: Ingest) -> None:
    account = new_account()
    _, _, raw = await post(api, "/v1/events/batch", {"events": [
        event(account, data={"i": i}) for i in range(23)]})
    before = [item["id"] for item in orjson.loads(raw)["data"]]
    assert await _walk(api, account, 5) == sorted(before, reverse=True)
    status, page = await api.call("GET", f"/v1/events?account_id={account}&limit=100")
    assert status == 200 and len(page["data"]) == 23 + 4  # one insert per page turn
    assert page["data"][-1]["data"] == {"i": 0} and not page["has_more"]


async def test_list_filters_by_type_and_time(api: Ingest) -> None:
    account = new_account()
    await post(api, "/v1/events", event(account, type="a.one"))
    await asyncio.sleep(0.01)
    _, _, raw = await post(api, "/v1/events", event(account, type="b.two"))
    middle = orjson.loads(raw)["created_at"]
    await asyncio.sleep(0.01)
    _, _, raw = await post(api, "/v1/events", event(account, type="a.one"))
    last = orjson.loads(raw)
    status, page = await api.call("GET", f"/v1/events?account_id={account}&type=a.one")
    assert status == 200 and [e["type"] for e in page["data"]] == ["a.one", "a.one"]
    status, page = await api.call(
        "GET", f"/v1/events?account_id={account}&since={middle}&until={last['created_at']}")
    assert status == 200 and [e["type"] for e in page["data"]] == ["b.two"]


async def test_attempts_are_listed_by_number_with_cursors(
        api: Ingest, db: asyncpg.Connection) -> None:
    account = new_account()
    await create_endpoint(api, account_id=account)
    _, _, raw = await post(api, "/v1/events", event(account))
    delivery_id = await db.fetchval("SELECT id FROM deliveries WHERE event_id = $1",
                                    orjson.loads(raw)["id"])
    now = utcnow()
    await db.executemany(
        "INSERT INTO attempts (id, delivery_id, attempt, started_at, duration_ms, status_code,"
        " error, response_excerpt) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        [(new_id("att"), delivery_id, n, now, 10 * n, 500 if n < 3 else None,
          None if n < 3 else "timeout", "oops") for n in (1, 2, 3)])
    path = f"/v1/deliveries/{delivery_id}/attempts?limit=2"
    status, page = await api.call("GET", path)
    assert status == 200 and [a["attempt"] for a in page["data"]] == [1, 2] and page["has_more"]
    assert set(page["data"][0]) == {"id", "attempt", "started_at", "duration_ms", "status_code",
                                    "error", "response_excerpt"}
    status, rest = await api.call("GET", f"{path}&cursor={page['next_cursor']}")
    assert [a["attempt"] for a in rest["data"]] == [3] and not rest["has_more"]
    assert rest["data"][0]["error"] == "timeout" and rest["data"][0]["status_code"] is None
    other = f"/v1/deliveries/{new_id('dlv')}/attempts?cursor={page['next_cursor']}"
    status, data = await api.call("GET", other)
    assert_error(status, data, 400, "invalid_request", "cursor")


async def test_a_database_failure_is_503_and_stores_nothing(
        api: Ingest, db: asyncpg.Connection) -> None:
    account = new_account()
    await db.execute("ALTER TABLE events ADD CONSTRAINT no_poison CHECK (type <> 'poison')"
                     " NOT VALID")
    try:
        status, _, raw = await post(api, "/v1/events", event(account, type="poison"))
        assert_error(status, orjson.loads(raw), 503, "unavailable")
        assert b"Traceback" not in raw and b"no_poison" not in raw
    finally:
        await db.execute("ALTER TABLE events DROP CONSTRAINT no_poison")
    status, _, _ = await post(api, "/v1/events", event(account))
    assert status == 202
    assert await db.fetchval("SELECT count(*) FROM events WHERE account_id = $1", account) == 1


# ----------------------------------------------------------------- the group committer itself

class _Store:
    """A fake commit function: records batches, fails those holding "fail", may be held."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.gate = asyncio.Event()
        self.running = self.max_running = 0

    async def __call__(self, items: list[str]) -> list[str]:
        self.running += 1
        self.max_running = max(self.max_running, self.running)
        try:
            await self.gate.wait()
            self.batches.append(list(items))
            if "fail" in items:
                raise OSError("disk on fire")
            return [f"ok:{item}" for item in items]
        finally:
            self.running -= 1


async def test_group_commit_answers_after_commit_and_never_splits_a_request() -> None:
    store = _Store()
    committer: GroupCommitter[str, str] = GroupCommitter(store, max_items=5, max_wait_s=0.001,
                                                          max_in_flight=2)
    committer.start()
    tasks = [asyncio.create_task(committer.submit([f"a{i}"])) for i in range(9)]
    tasks.append(asyncio.create_task(committer.submit(["b1", "b2", "b3"])))
    await asyncio.sleep(0.05)
    assert not any(t.done() for t in tasks) and store.running == 2  # held before commit
    store.gate.set()
    results = await asyncio.gather(*tasks)
    assert results == [[f"ok:a{i}"] for i in range(9)] + [["ok:b1", "ok:b2", "ok:b3"]]
    assert store.max_running == 2 and all(len(b) <= 5 for b in store.batches)
    assert any(b[-3:] == ["b1", "b2", "b3"] for b in store.batches)
    await committer.stop()


async def test_a_failed_commit_fails_only_its_own_batch() -> None:
    store = _Store()
    committer: GroupCommitter[str, str] = GroupCommitter(store, max_items=10, max_wait_s=0,
                                                          max_in_flight=1)
    committer.start()
    failing = asyncio.create_task(committer.submit(["fail"]))
    await asyncio.sleep(0.01)  # its batch is committing; the next ones queue behind it
    later = [asyncio.create_task(committer.submit([x])) for x in ("x", "y")]
    await asyncio.sleep(0.01)
    store.gate.set()
    with pytest.raises(Unavailable):
        await failing
    assert [await t for t in later] == [["ok:x"], ["ok:y"]]
    assert store.batches == [["fail"], ["x", "y"]]
    await committer.stop()


async def test_stop_commits_what_is_queued_and_refuses_new_work() -> None:
    store = _Store()
    committer: GroupCommitter[str, str] = GroupCommitter(store, max_items=10, max_wait_s=60,
                                                          max_in_flight=1)
    committer.start()
    # many callers at a high rate: company is expected, so the batch waits for it
    for n in range(200):
        committer._company.arrive(time.monotonic(), source=n)
    queued = [asyncio.create_task(committer.submit([str(i)], source=i)) for i in range(3)]
    await asyncio.sleep(0.01)
    stopping = asyncio.create_task(committer.stop())
    await asyncio.sleep(0.01)
    with pytest.raises(Unavailable):
        await committer.submit(["late"])
    store.gate.set()
    await stopping
    assert [await t for t in queued] == [["ok:0"], ["ok:1"], ["ok:2"]]
    assert store.batches == [["0", "1", "2"]]


async def test_a_lone_caller_is_not_kept_waiting_for_company() -> None:
    """One connection posting one request at a time never brings its own company: its
    batch closes at once however long the committer may wait, and however fast it posts."""
    store = _Store()
    store.gate.set()
    committer: GroupCommitter[str, str] = GroupCommitter(store, max_items=10, max_wait_s=60,
                                                          max_in_flight=1)
    committer.start()
    async with asyncio.timeout(5):
        for i in range(300):
            assert await committer.submit([str(i)], source="conn-1") == [f"ok:{i}"]
    assert len(store.batches) == 300
    await committer.stop()


def _sample(text: str, line_start: str) -> float:
    """The value of the one sample line that starts with ``line_start`` (0 when absent)."""
    values = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
              if line.startswith(line_start + " ")]
    assert len(values) <= 1, line_start
    return values[0] if values else 0.0


async def _metrics(api: Ingest) -> str:
    async with api.client.get("/metrics") as response:
        assert response.status == 200
        return await response.text()


async def test_metrics_count_requests_by_route_and_status_and_events(api: Ingest) -> None:
    route = 'http_requests_total{method="POST",route="/v1/events",status="%s"}'
    before = await _metrics(api)
    account = new_account()
    await create_endpoint(api, account_id=account)
    for _ in range(3):
        assert (await post(api, "/v1/events", event(account)))[0] == 202
    async with api.client.post("/v1/events", data=b"{}", headers={
            "Content-Type": "application/json"}) as response:
        assert response.status == 401
    assert (await post(api, "/v1/events", None, raw=b"[1]"))[0] == 400
    after = await _metrics(api)
    for status, grew in (("202", 3), ("401", 1), ("400", 1), ("500", 0)):
        assert _sample(after, route % status) - _sample(before, route % status) == grew, status
    accepted = "postwire_events_accepted_total"
    assert _sample(after, accepted) - _sample(before, accepted) == 3
    batches = "postwire_group_commit_batch_size_sum"
    assert _sample(after, batches) - _sample(before, batches) >= 3
    assert _sample(after, "postwire_outbox_backlog") >= 0
    assert 'http_request_duration_seconds_count{method="POST",route="/v1/events"}' in after


async def test_list_without_account_spans_accounts(api: Ingest) -> None:
    first, second = new_account(), new_account()
    ids = []
    for account in (first, second, first):
        _, _, raw = await post(api, "/v1/events", event(account, type="list.span"))
        ids.append(orjson.loads(raw)["id"])
    status, page = await api.call("GET", "/v1/events?type=list.span&limit=100")
    assert status == 200, page
    assert [e["id"] for e in page["data"]][:3] == ids[::-1]
    assert {e["account_id"] for e in page["data"]} >= {first, second}


async def test_batch_of_500_is_accepted_and_501_refused(api: Ingest,
                                                         db: asyncpg.Connection) -> None:
    account = new_account()
    status, _, raw = await post(api, "/v1/events/batch", {"events": [
        event(account, data={"i": i}) for i in range(501)]})
    assert_error(status, orjson.loads(raw), 400, "invalid_request", "events")
    assert await db.fetchval("SELECT count(*) FROM events WHERE account_id = $1", account) == 0
    status, _, raw = await post(api, "/v1/events/batch", {"events": [
        event(account, data={"i": i}) for i in range(500)]})
    assert status == 202, raw
    results = orjson.loads(raw)["data"]
    assert len(results) == 500 and all(set(r) == RESULT_FIELDS for r in results)
    assert await db.fetchval("SELECT count(*) FROM events WHERE account_id = $1", account) == 500
