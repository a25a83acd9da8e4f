"""The operator's read views against real Postgres: dead-letter list (filters, pagination while
rows arrive), one event with deliveries and attempts, and the audit log."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import asyncpg
import pytest

from shared.core.ids import new_id
from shared.core.timefmt import format_ts, utcnow
from tests.support.admin_app import AdminApp
from tests.support.seeding import insert_dead_deliveries, insert_endpoint

pytestmark = pytest.mark.asyncio(loop_scope="session")

URL = "http://127.0.0.1:9/hook"


def _account() -> str:
    return f"acct_{uuid.uuid4().hex[:8]}"


async def _walk(admin: AdminApp, query: str) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []
    cursor = None
    while True:
        suffix = f"&cursor={cursor}" if cursor else ""
        status, page, _ = await admin.call("GET", f"/admin/v1/dead-letters?{query}{suffix}")
        assert status == 200
        seen.extend(page["data"])
        if not page["has_more"]:
            assert page["next_cursor"] is None
            return seen
        cursor = page["next_cursor"]


async def test_dead_letters_have_the_contract_fields_newest_first(
        admin: AdminApp, pool: asyncpg.Pool) -> None:
    endpoint = await insert_endpoint(pool, account_id=_account(), url=URL)
    made = await insert_dead_deliveries(pool, endpoint, 3, event_type="invoice.failed")
    status, page, _ = await admin.call(
        "GET", f"/admin/v1/dead-letters?endpoint_id={endpoint.id}&limit=2")
    assert status == 200 and page["has_more"] is True
    first = page["data"][0]
    assert set(first) >= {"delivery_id", "event_id", "endpoint_id", "account_id", "type",
                          "reason", "attempt_count", "last_status_code", "last_error",
                          "dead_at", "replay_count"}
    assert first["delivery_id"] == made[-1].delivery_id  # newest first
    assert (first["type"], first["reason"], first["replay_count"]) == (
        "invoice.failed", "retries_exhausted", 0)
    assert first["dead_at"].endswith("Z")


async def test_every_filter_narrows_the_list(admin: AdminApp, pool: asyncpg.Pool) -> None:
    account = _account()
    one = await insert_endpoint(pool, account_id=account, url=URL)
    two = await insert_endpoint(pool, account_id=account, url=URL)
    old = utcnow() - timedelta(days=2)
    await insert_dead_deliveries(pool, one, 2, event_type="a.b", dead_at=old)
    await insert_dead_deliveries(pool, two, 3, event_type="c.d")
    assert len(await _walk(admin, f"account_id={account}")) == 5
    assert len(await _walk(admin, f"endpoint_id={two.id}")) == 3
    assert len(await _walk(admin, f"account_id={account}&type=a.b")) == 2
    since = format_ts(utcnow() - timedelta(days=1))
    assert len(await _walk(admin, f"account_id={account}&since={since}")) == 3
    assert len(await _walk(admin, f"account_id={account}&until={since}")) == 2


async def test_walking_the_cursor_returns_each_row_once_while_rows_arrive(
        admin: AdminApp, pool: asyncpg.Pool) -> None:
    endpoint = await insert_endpoint(pool, account_id=_account(), url=URL)
    made = await insert_dead_deliveries(pool, endpoint, 25)
    seen: list[str] = []
    cursor = None
    while True:
        suffix = f"&cursor={cursor}" if cursor else ""
        _, page, _ = await admin.call(
            "GET", f"/admin/v1/dead-letters?endpoint_id={endpoint.id}&limit=4{suffix}")
        seen.extend(d["delivery_id"] for d in page["data"])
        await insert_dead_deliveries(pool, endpoint, 2)  # new dead letters keep arriving
        if not page["has_more"]:
            break
        cursor = page["next_cursor"]
    assert len(seen) == len(set(seen))
    assert set(seen) >= {m.delivery_id for m in made}


@pytest.mark.parametrize("query", ["limit=0", "limit=101", "cursor=garbage", "since=yesterday",
                                   "color=red"])
async def test_bad_list_parameters_are_400(admin: AdminApp, query: str) -> None:
    status, body, _ = await admin.call("GET", f"/admin/v1/dead-letters?{query}")
    assert (status, body["error"]["type"]) == (400, "invalid_request")


async def test_event_view_shows_deliveries_and_attempts(
        admin: AdminApp, pool: asyncpg.Pool) -> None:
    endpoint = await insert_endpoint(pool, account_id=_account(), url=URL)
    [made] = await insert_dead_deliveries(pool, endpoint, 1)
    for n, code in ((1, 500), (2, 503)):
        await pool.execute(
            "INSERT INTO attempts (id, delivery_id, attempt, started_at, duration_ms,"
            " status_code, error, response_excerpt) VALUES ($1, $2, $3, now(), 12, $4, NULL,"
            " 'oops')", new_id("att"), made.delivery_id, n, code)
    status, event, _ = await admin.call("GET", f"/admin/v1/events/{made.event_id}")
    assert status == 200
    assert (event["id"], event["account_id"], event["data"]) == (
        made.event_id, endpoint.account_id, {"n": 0})
    [delivery] = event["deliveries"]
    assert (delivery["id"], delivery["status"]) == (made.delivery_id, "dead")
    assert delivery["dead_letter"]["reason"] == "retries_exhausted"
    assert [(a["attempt"], a["status_code"], a["response_excerpt"])
            for a in delivery["attempts"]] == [(1, 500, "oops"), (2, 503, "oops")]


async def test_audit_log_lists_replays_newest_first_with_a_cursor(
        admin: AdminApp, pool: asyncpg.Pool) -> None:
    endpoint = await insert_endpoint(pool, account_id=_account(), url=URL)
    made = await insert_dead_deliveries(pool, endpoint, 3)
    for n, item in enumerate(made):
        status, _, _ = await admin.call("POST", f"/admin/v1/events/{item.event_id}/replay",
                                        {"reason": f"reason {n}"})
        assert status == 202
    status, page, _ = await admin.call("GET", "/admin/v1/audit-log?limit=2&action=replay.event")
    assert status == 200 and page["has_more"] is True
    assert [e["target"] for e in page["data"]] == [made[2].event_id, made[1].event_id]
    entry = page["data"][0]
    assert set(entry) == {"id", "at", "operator", "action", "target", "reason", "details"}
    assert (entry["operator"], entry["reason"]) == ("admin", "reason 2")
    _, rest, _ = await admin.call(
        "GET", f"/admin/v1/audit-log?limit=2&action=replay.event&cursor={page['next_cursor']}")
    assert rest["data"][0]["target"] == made[0].event_id
