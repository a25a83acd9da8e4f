"""Producer reconciliation (``POST /v1/reconcile``) over real HTTP, Postgres and broker.

A generated data set is accepted through the batch API; deliveries are then moved to planted
states (open, dead, cancelled, succeeded) in Postgres, and the reconciliation must report
exactly the planted sets, with ids that differ only in case or carry surrounding whitespace
handled by the documented rule (event ids case-insensitive, Idempotency-Keys case-sensitive,
surrounding whitespace ignored).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import orjson
import pytest_asyncio

from tests.conftest import ServiceEnvFactory
from tests.support.ingest_app import (
    Ingest,
    assert_error,
    create_endpoint,
    new_account,
    running_ingest,
)

NDJSON = "application/x-ndjson"


@pytest_asyncio.fixture(scope="module")
async def db(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    try:
        yield pool
    finally:
        await pool.close()


@dataclass
class DataSet:
    """What was accepted and what was planted."""

    account: str
    endpoints: list[str]
    event_of_key: dict[str, str] = field(default_factory=dict)
    open: set[tuple[str, str]] = field(default_factory=set)         # (key, endpoint)
    dead: dict[tuple[str, str], str] = field(default_factory=dict)  # (key, endpoint) -> reason
    cancelled: set[tuple[str, str]] = field(default_factory=set)


async def reconcile(api: Ingest, body: bytes | AsyncIterator[bytes], content_type: str = NDJSON,
                    **query: str) -> tuple[int, list[dict[str, Any]]]:
    headers = {**api.auth, "Content-Type": content_type}
    async with api.client.post("/v1/reconcile", data=body, params=query,
                               headers=headers) as response:
        raw = await response.read()
    if response.status != 200:
        return response.status, [orjson.loads(raw)]
    return response.status, [orjson.loads(line) for line in raw.splitlines()]


async def accept(api: Ingest, account: str, keys: list[str]) -> dict[str, str]:
    """Send one event per key through the batch API; returns key -> event id."""
    result: dict[str, str] = {}
    for start in range(0, len(keys), 100):
        chunk = keys[start:start + 100]
        status, data = await api.call("POST", "/v1/events/batch", {"events": [
            {"account_id": account, "type": "invoice.paid", "data": {"n": i},
             "idempotency_key": key} for i, key in enumerate(chunk)]})
        assert status == 202, data
        for key, item in zip(chunk, data["data"], strict=True):
            result[key] = item["id"]
    return result


async def plant(db: asyncpg.Pool, data: DataSet, rng: random.Random) -> None:
    """Move every delivery to succeeded, except planted open, dead and cancelled ones."""
    rows = await db.fetch("SELECT d.id, d.endpoint_id, d.event_id FROM deliveries d"
                          " WHERE d.account_id = $1", data.account)
    key_of = {event: key for key, event in data.event_of_key.items()}
    reasons = ("retries_exhausted", "non_retryable_status", "gone")
    for row in rows:
        pair = (key_of[row["event_id"]], row["endpoint_id"])
        roll = rng.random()
        if roll < 0.1:
            status = rng.choice(("pending", "retrying"))
            data.open.add(pair)
        elif roll < 0.2:
            status = "dead"
            data.dead[pair] = rng.choice(reasons)
            await db.execute(
                "INSERT INTO dead_letters (delivery_id, event_id, endpoint_id, account_id, type,"
                " reason, attempt_count, last_status_code, dead_at)"
                " VALUES ($1, $2, $3, $4, 'invoice.paid', $5, 8, 500, now())",
                row["id"], row["event_id"], row["endpoint_id"], data.account, data.dead[pair])
        elif roll < 0.25:
            status = "cancelled"
            data.cancelled.add(pair)
        else:
            status = "succeeded"
        await db.execute("UPDATE deliveries SET status = $2 WHERE id = $1", row["id"], status)


@pytest_asyncio.fixture(scope="module")
async def data(api: Ingest, db: asyncpg.Pool) -> DataSet:
    account = new_account()
    endpoints = [(await create_endpoint(api, account_id=account))["id"] for _ in range(2)]
    keys = [f"order-{i:04d}" for i in range(240)]
    keys += ["Case-1", "case-1", "CASE-2"]  # two distinct keys differing only in case, and one
    keys += [" padded-1", "padded-2 "]       # batch keys with surrounding spaces
    dataset = DataSet(account, endpoints)
    dataset.event_of_key = await accept(api, account, keys)
    # the same keys in another account must never match
    other = new_account()
    await create_endpoint(api, account_id=other)
    await accept(api, other, ["order-0000", "never-sent-0"])
    await plant(db, dataset, random.Random(15))
    return dataset


def lines_of(items: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [i for i in items if i["kind"] == kind]


async def test_reconcile_finds_exactly_the_planted_sets(api: Ingest, data: DataSet) -> None:
    accepted = [k for k in data.event_of_key if k.startswith("order-")]
    never_sent = [f"never-sent-{i}" for i in range(12)]
    upload = [f"  {k}\t" if i % 7 == 0 else k for i, k in enumerate(accepted)]  # whitespace
    upload += [*never_sent, "order-0001", "order-0002"]                         # duplicates
    upload += ["case-1", "Case-1", "case-2"]   # case-2 differs from CASE-2 only in case
    upload += ["padded-1", "  padded-2"]       # stored trimmed, so both match
    body = b"\n".join(orjson.dumps(k) if i % 2 else orjson.dumps({"id": k})
                      for i, k in enumerate(upload)) + b"\n"
    status, items = await reconcile(api, body, account_id=data.account)
    assert status == 200, items

    assert items[-1]["kind"] == "summary"
    missing = {i["id"] for i in lines_of(items, "missing")}
    assert missing == set(never_sent) | {"case-2"}
    uploaded = {u.strip() for u in upload}
    matched_keys = {k.strip() for k in data.event_of_key if k.strip() in uploaded}
    assert "CASE-2" not in matched_keys and {"Case-1", "case-1"} <= matched_keys
    open_lines = lines_of(items, "open")
    key_of = {e: k.strip() for k, e in data.event_of_key.items()}
    found_open = {(key_of[i["event_id"]], i["endpoint_id"]) for i in open_lines}
    assert found_open == {(k.strip(), ep) for k, ep in data.open if k.strip() in matched_keys}
    assert all(i["status"] in ("pending", "retrying") for i in open_lines)
    failed = lines_of(items, "failed")
    found_dead = {(key_of[i["event_id"]], i["endpoint_id"]): i["reason"] for i in failed
                  if i["status"] == "dead"}
    assert found_dead == {(k.strip(), ep): r for (k, ep), r in data.dead.items()
                          if k.strip() in matched_keys}
    found_cancelled = {(key_of[i["event_id"]], i["endpoint_id"]) for i in failed
                       if i["status"] == "cancelled"}
    assert found_cancelled == {(k.strip(), ep) for k, ep in data.cancelled
                               if k.strip() in matched_keys}
    assert all(i["reason"] == "endpoint_deleted" for i in failed if i["status"] == "cancelled")
    assert [(i["endpoint_id"], i["delivery_id"]) for i in open_lines] == sorted(
        (i["endpoint_id"], i["delivery_id"]) for i in open_lines)

    summary = items[-1]
    events = len(matched_keys)
    open_events = {k.strip() for k, _ in data.open}
    failed_events = {k.strip() for k, _ in data.dead} | {k.strip() for k, _ in data.cancelled}
    assert summary["ids_received"] == len(upload)
    assert summary["ids_missing"] == len(never_sent) + 1
    assert summary["events_accepted"] == events
    assert summary["events_open"] == len(open_events & matched_keys)
    assert summary["events_failed"] == len((failed_events - open_events) & matched_keys)
    assert summary["events_fully_delivered"] == events - len(
        (open_events | failed_events) & matched_keys)
    assert summary["deliveries"]["total"] == 2 * events
    open_pairs = [(k.strip(), ep) for k, ep in data.open if k.strip() in matched_keys]
    assert summary["deliveries"]["open"] == len(open_pairs)
    assert summary["open_by_endpoint"] == {
        ep: n for ep in data.endpoints if (n := len([p for p in open_pairs if p[1] == ep]))}


async def test_event_ids_are_case_insensitive_and_csv_is_accepted(
        api: Ingest, data: DataSet) -> None:
    event_ids = [data.event_of_key[f"order-{i:04d}"] for i in range(20)]
    rows = ["event_id,amount"] + [f'" {e.lower()} ",12' if i % 2 else f"{e.upper()},3"
                                  for i, e in enumerate(event_ids)]
    rows.append("evt_01ARZ3NDEKTSV4RRFFQ69G5FAV,1")  # well-formed, never accepted
    body = ("\r\n".join(rows) + "\r\n").encode()
    status, items = await reconcile(api, body, "text/csv", account_id=data.account,
                                    id_type="event_id")
    assert status == 200, items
    assert {i["id"] for i in lines_of(items, "missing")} == {"evt_01ARZ3NDEKTSV4RRFFQ69G5FAV"}
    summary = items[-1]
    assert summary["ids_received"] == 21 and summary["events_accepted"] == 20
    reported = {i["event_id"] for i in items if i["kind"] in ("open", "failed")}
    assert reported <= set(event_ids)


async def test_window_and_account_scope(api: Ingest, data: DataSet) -> None:
    body = b'"order-0000"\n"order-0001"\n'
    status, items = await reconcile(api, body, account_id=data.account,
                                    to="2000-01-01T00:00:00Z")
    assert status == 200
    assert {i["id"] for i in lines_of(items, "missing")} == {"order-0000", "order-0001"}
    assert items[-1]["to"] == "2000-01-01T00:00:00.000Z"
    for window in ({"from": "2000-01-01T00:00:00Z"},
                   {"from": "2000-01-01T00:00:00Z", "to": "2999-01-01T00:00:00Z"}):
        status, items = await reconcile(api, body, account_id=data.account, **window)
        assert status == 200 and lines_of(items, "missing") == [], window  # inside the window
        assert items[-1]["events_accepted"] == 2
    status, items = await reconcile(api, body, account_id=data.account,
                                    **{"from": "2999-01-01T00:00:00Z"})
    assert {i["id"] for i in lines_of(items, "missing")} == {"order-0000", "order-0001"}
    status, items = await reconcile(api, b'"never-sent-0"\n', account_id=data.account)
    assert {i["id"] for i in lines_of(items, "missing")} == {"never-sent-0"}


async def test_empty_upload_answers_an_empty_summary(api: Ingest, data: DataSet) -> None:
    status, items = await reconcile(api, b"\n\n", account_id=data.account)
    assert status == 200
    assert len(items) == 1 and items[0]["kind"] == "summary"
    assert (items[0]["ids_received"], items[0]["ids_missing"], items[0]["events_accepted"],
            items[0]["deliveries"]["total"]) == (0, 0, 0, 0)


async def test_bad_requests_are_contract_errors(api: Ingest, data: DataSet) -> None:
    status, items = await reconcile(api, b'"a"\n')
    assert_error(status, items[0], 400, "invalid_request", "account_id")
    status, items = await reconcile(api, b'"a"\n', account_id=data.account, id_type="uuid")
    assert_error(status, items[0], 400, "invalid_request", "id_type")
    status, items = await reconcile(api, b'"a"\n', "application/json", account_id=data.account)
    assert_error(status, items[0], 415, "unsupported_media_type", "Content-Type")
    status, items = await reconcile(api, b'"a"\n{not json\n', account_id=data.account)
    assert_error(status, items[0], 400, "invalid_request", "body")
    assert "line 2" in items[0]["error"]["message"]
    status, items = await reconcile(api, b"[1]\n", account_id=data.account)
    assert_error(status, items[0], 400, "invalid_request", "body")
    status, items = await reconcile(api, b'"a"\n', account_id=data.account,
                                    **{"from": "2026-01-02T00:00:00Z",
                                       "to": "2026-01-01T00:00:00Z"})
    assert_error(status, items[0], 400, "invalid_request", "from")
    async with api.client.post("/v1/reconcile", data=b'"a"\n', params={"account_id": "x"},
                               headers={"Content-Type": NDJSON}) as response:
        assert response.status == 401


async def test_an_upload_over_the_id_limit_is_refused_and_slots_are_bounded(
        service_env: ServiceEnvFactory) -> None:
    async with running_ingest(service_env(RECONCILE_MAX_IDS="5",
                                          RECONCILE_CONCURRENCY="1")) as small:
        status, items = await reconcile(small, b"".join(b'"k%d"\n' % i for i in range(6)),
                                        account_id="acct_x")
        assert_error(status, items[0], 413, "payload_too_large")
        status, items = await reconcile(small, b"".join(b'"k%d"\n' % i for i in range(5)),
                                        account_id="acct_x")
        assert status == 200 and items[-1]["ids_missing"] == 5
        release = asyncio.Event()

        async def held_body() -> AsyncIterator[bytes]:
            yield b'"k0"\n'
            await release.wait()

        await asyncio.sleep(0.5)  # the last answer's slot is freed once its connection closed
        first = asyncio.create_task(reconcile(small, held_body(), account_id="acct_x"))
        await asyncio.sleep(0.5)  # ...and this one has taken the only slot
        status, items = await reconcile(small, b'"k1"\n', account_id="acct_x")
        assert_error(status, items[0], 429, "rate_limited")
        release.set()
        status, items = await first
        assert status == 200 and items[-1]["ids_received"] == 1
