"""Replay by event id against real Postgres and Kafka: outcomes, structural safety, audit rows,
Idempotency-Key behaviour, errors and authentication."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Mapping
from typing import Any

import asyncpg
import pytest

from shared.core.delivery_message import delivery_key
from shared.core.ids import new_id
from tests.support.admin_app import AdminApp
from tests.support.seeding import SeededEndpoint, insert_dead_deliveries, insert_endpoint
from tests.support.topics import read_deliveries

pytestmark = pytest.mark.asyncio(loop_scope="session")

URL = "http://127.0.0.1:9/hook"  # never called: no dispatcher runs in these tests


SERVICE_POOL = True  # the pool fixture decodes jsonb (audit details) like the services' pool


async def _endpoint(pool: asyncpg.Pool, **kwargs: Any) -> SeededEndpoint:
    return await insert_endpoint(pool, account_id=f"acct_{uuid.uuid4().hex[:8]}", url=URL, **kwargs)


async def _replay(admin: AdminApp, event_id: str,
                  **body: Any) -> tuple[int, Any, Mapping[str, str]]:
    body.setdefault("reason", "merchant fixed their endpoint")
    return await admin.call("POST", f"/admin/v1/events/{event_id}/replay", body)


async def test_replay_queues_a_dead_delivery_and_audits_it(
        admin: AdminApp, pool: asyncpg.Pool, kafka_bootstrap: str, topic_prefix: str) -> None:
    endpoint = await _endpoint(pool)
    [dead] = await insert_dead_deliveries(pool, endpoint, 1, ordering_key="order-7")
    status, body, _ = await _replay(admin, dead.event_id)
    assert status == 202
    assert body["replay_id"].startswith("rpl_")
    assert body["deliveries"] == [{"delivery_id": dead.delivery_id, "endpoint_id": endpoint.id,
                                   "outcome": "queued", "replay_count": 1}]
    row = await pool.fetchrow("SELECT * FROM deliveries WHERE id = $1", dead.delivery_id)
    assert (row["status"], row["generation"], row["round_attempt_count"]) == ("pending", 1, 0)
    assert row["next_attempt_at"] is not None
    assert await pool.fetchval("SELECT replay_count FROM dead_letters WHERE delivery_id = $1",
                               dead.delivery_id) == 1
    audit = await pool.fetchrow("SELECT * FROM audit_log WHERE target = $1", dead.event_id)
    assert (audit["operator"], audit["action"], audit["reason"]) == (
        "admin", "replay.event", "merchant fixed their endpoint")
    assert audit["details"]["replay_id"] == body["replay_id"]
    assert audit["details"]["outcomes"] == {"queued": 1}
    messages = [m for _, m in await read_deliveries(kafka_bootstrap, topic_prefix, expect=1)
                if m.delivery_id == dead.delivery_id]
    assert [(m.generation, m.sequence, m.ordering_key) for m in messages] == [(1, 1, "order-7")]
    keys = [k for k, m in await read_deliveries(kafka_bootstrap, topic_prefix, expect=1)
            if m.delivery_id == dead.delivery_id]
    assert keys == [delivery_key(endpoint.id)] == [endpoint.id.encode()]


async def test_outcomes_for_every_delivery_state(admin: AdminApp, pool: asyncpg.Pool) -> None:
    live = await _endpoint(pool)
    disabled = await _endpoint(pool, enabled=False)
    deleted = await _endpoint(pool, deleted=True)
    cases = {
        "pending": (live, "pending", "already_pending"),
        "retrying": (live, "retrying", "already_pending"),
        "succeeded": (live, "succeeded", "not_dead"),
        "disabled": (disabled, "dead", "endpoint_disabled"),
        "deleted": (deleted, "dead", "endpoint_deleted"),
    }
    for endpoint, state, expected in cases.values():
        [made] = await insert_dead_deliveries(pool, endpoint, 1, status=state)
        status, body, _ = await _replay(admin, made.event_id)
        assert status == 202
        assert [d["outcome"] for d in body["deliveries"]] == [expected], state
        row = await pool.fetchrow("SELECT status, generation FROM deliveries WHERE id = $1",
                                  made.delivery_id)
        assert (row["status"], row["generation"]) == (state, 0)  # nothing changed


async def test_include_succeeded_requeues_a_succeeded_delivery(
        admin: AdminApp, pool: asyncpg.Pool) -> None:
    endpoint = await _endpoint(pool)
    [made] = await insert_dead_deliveries(pool, endpoint, 1, status="succeeded")
    status, body, _ = await _replay(admin, made.event_id, include_succeeded=True)
    assert status == 202
    assert [d["outcome"] for d in body["deliveries"]] == ["queued"]
    assert await pool.fetchval("SELECT generation FROM deliveries WHERE id = $1",
                               made.delivery_id) == 1


async def test_endpoint_ids_selects_deliveries_and_unknown_endpoint_is_refused(
        admin: AdminApp, pool: asyncpg.Pool) -> None:
    first, second = await _endpoint(pool), await _endpoint(pool)
    [a] = await insert_dead_deliveries(pool, first, 1)
    # a second delivery of the same event, to another endpoint
    other = new_id("dlv")
    await pool.execute(
        "INSERT INTO deliveries (id, event_id, endpoint_id, account_id, status, created_at,"
        " updated_at) VALUES ($1, $2, $3, $4, 'dead', now(), now())",
        other, a.event_id, second.id, second.account_id)
    status, body, _ = await _replay(admin, a.event_id, endpoint_ids=[second.id])
    assert status == 202
    assert [(d["delivery_id"], d["outcome"]) for d in body["deliveries"]] == [(other, "queued")]
    status, body, _ = await _replay(admin, a.event_id, endpoint_ids=[new_id("ep")])
    assert (status, body["error"]["type"], body["error"]["param"]) == (
        400, "invalid_request", "endpoint_ids")


async def test_concurrent_replays_queue_each_delivery_once(
        admin: AdminApp, pool: asyncpg.Pool, kafka_bootstrap: str, topic_prefix: str) -> None:
    endpoint = await _endpoint(pool)
    [dead] = await insert_dead_deliveries(pool, endpoint, 1)
    results = await asyncio.gather(*(_replay(admin, dead.event_id) for _ in range(12)))
    outcomes = sorted(body["deliveries"][0]["outcome"] for _, body, _ in results)
    assert outcomes == ["already_pending"] * 11 + ["queued"]
    row = await pool.fetchrow("SELECT generation FROM deliveries WHERE id = $1", dead.delivery_id)
    assert row["generation"] == 1
    messages = await read_deliveries(kafka_bootstrap, topic_prefix, expect=10_000, timeout_s=3)
    assert sum(1 for _, m in messages if m.delivery_id == dead.delivery_id) == 1


@pytest.mark.parametrize(("retry_ends", "expected"), [("dead", "queued"),
                                                      ("succeeded", "not_dead")])
async def test_replay_racing_the_dispatchers_retry_waits_for_it(
        admin: AdminApp, pool: asyncpg.Pool, retry_ends: str, expected: str) -> None:
    endpoint = await _endpoint(pool)
    [made] = await insert_dead_deliveries(pool, endpoint, 1, status="retrying")
    async with pool.acquire() as conn, conn.transaction():
        # the dispatcher holds the delivery while its retry is in flight...
        await conn.execute("SELECT 1 FROM deliveries WHERE id = $1 FOR UPDATE", made.delivery_id)
        replay = asyncio.create_task(_replay(admin, made.event_id))
        await asyncio.sleep(0.3)
        assert not replay.done()  # the replay waits on the row lock
        # ...and records how it ended
        await conn.execute("UPDATE deliveries SET status = $2 WHERE id = $1",
                           made.delivery_id, retry_ends)
    status, body, _ = await replay
    assert (status, body["deliveries"][0]["outcome"]) == (202, expected)
    generation = 1 if expected == "queued" else 0
    assert await pool.fetchval("SELECT generation FROM deliveries WHERE id = $1",
                               made.delivery_id) == generation
    second = await _replay(admin, made.event_id)
    assert second[1]["deliveries"][0]["outcome"] in ("already_pending", "not_dead")


async def test_a_second_replay_after_the_first_finished_sends_again(
        admin: AdminApp, pool: asyncpg.Pool) -> None:
    endpoint = await _endpoint(pool)
    [made] = await insert_dead_deliveries(pool, endpoint, 1)
    key = {"Idempotency-Key": f"k-{uuid.uuid4()}"}
    body = {"reason": "first try"}
    first = await admin.call("POST", f"/admin/v1/events/{made.event_id}/replay", body,
                             headers=key)
    assert first[1]["deliveries"][0]["outcome"] == "queued"
    # the replayed delivery dies again (as the dispatcher would record it)
    await pool.execute("UPDATE deliveries SET status = 'dead' WHERE id = $1", made.delivery_id)
    again = await _replay(admin, made.event_id, reason="second try")
    assert again[1]["deliveries"][0] == {"delivery_id": made.delivery_id,
                                         "endpoint_id": endpoint.id, "outcome": "queued",
                                         "replay_count": 2}
    assert await pool.fetchval("SELECT generation FROM deliveries WHERE id = $1",
                               made.delivery_id) == 2


async def test_idempotency_key_dedupes_only_a_retried_identical_request(
        admin: AdminApp, pool: asyncpg.Pool) -> None:
    endpoint = await _endpoint(pool)
    [made] = await insert_dead_deliveries(pool, endpoint, 1)
    path = f"/admin/v1/events/{made.event_id}/replay"
    key = {"Idempotency-Key": f"k-{uuid.uuid4()}"}
    first = await admin.call("POST", path, {"reason": "retry me"}, headers=key)
    await pool.execute("UPDATE deliveries SET status = 'dead' WHERE id = $1", made.delivery_id)
    retried = await admin.call("POST", path, {"reason": "retry me"}, headers=key)
    assert retried[0] == 202 and retried[1] == first[1]
    assert retried[2].get("Idempotent-Replayed") == "true"
    assert await pool.fetchval("SELECT generation FROM deliveries WHERE id = $1",
                               made.delivery_id) == 1
    assert await pool.fetchval("SELECT count(*) FROM audit_log WHERE target = $1",
                               made.event_id) == 1
    conflict = await admin.call("POST", path, {"reason": "something else"}, headers=key)
    assert (conflict[0], conflict[1]["error"]["type"]) == (409, "idempotency_conflict")


async def test_unknown_and_malformed_event_ids_are_404(admin: AdminApp) -> None:
    for event_id in (new_id("evt"), "evt_nope", "ep_01JD0000000000000000000000"):
        status, body, _ = await _replay(admin, event_id)
        assert (status, body["error"]["type"]) == (404, "not_found")
        status, body, _ = await admin.call("GET", f"/admin/v1/events/{event_id}")
        assert (status, body["error"]["type"]) == (404, "not_found")


@pytest.mark.parametrize(("body", "param"), [
    ({}, "reason"),
    ({"reason": "   "}, "reason"),
    ({"reason": "x", "color": "red"}, "color"),
    ({"reason": "x", "include_succeeded": "yes"}, "include_succeeded"),
    ({"reason": "x", "endpoint_ids": ["nope"]}, "endpoint_ids"),
    ({"reason": "x", "endpoint_ids": []}, "endpoint_ids"),
])
async def test_invalid_replay_bodies_are_400(
        admin: AdminApp, pool: asyncpg.Pool, body: dict[str, Any], param: str) -> None:
    endpoint = await _endpoint(pool)
    [made] = await insert_dead_deliveries(pool, endpoint, 1)
    status, answer, _ = await admin.call("POST", f"/admin/v1/events/{made.event_id}/replay", body)
    assert (status, answer["error"]["type"], answer["error"]["param"]) == (
        400, "invalid_request", param)
    assert await pool.fetchval("SELECT status FROM deliveries WHERE id = $1",
                               made.delivery_id) == "dead"


async def test_non_json_bodies_are_refused(admin: AdminApp) -> None:
    path = f"/admin/v1/events/{new_id('evt')}/replay"
    auth = {"Authorization": f"Bearer {admin.token}"}
    async with admin.client.post(path, data=b"[1]", headers={
            **auth, "Content-Type": "application/json"}) as response:
        assert response.status == 400
    async with admin.client.post(path, data=b"reason=x", headers={
            **auth, "Content-Type": "text/plain"}) as response:
        assert response.status == 415
        assert (await response.json())["error"]["type"] == "unsupported_media_type"


async def test_only_admin_tokens_are_accepted(admin: AdminApp, api_key: str) -> None:
    for headers in ({}, {"Authorization": f"Bearer {api_key}"},
                    {"Authorization": "Bearer wrong-token-xyz"}, {"Authorization": "Basic abc"}):
        async with admin.client.get("/admin/v1/dead-letters", headers=headers) as response:
            assert response.status == 401
            assert (await response.json())["error"]["type"] == "authentication_failed"
    status, _, _ = await admin.call("GET", "/admin/v1/dead-letters")
    assert status == 200


async def test_concurrent_retries_with_one_idempotency_key_queue_once(
        admin: AdminApp, pool: asyncpg.Pool) -> None:
    endpoint = await _endpoint(pool)
    [made] = await insert_dead_deliveries(pool, endpoint, 1)
    key = {"Idempotency-Key": f"k-{uuid.uuid4()}"}
    results = await asyncio.gather(*(
        admin.call("POST", f"/admin/v1/events/{made.event_id}/replay", {"reason": "same"},
                   headers=key) for _ in range(8)))
    assert {status for status, _, _ in results} == {202}
    assert len({body["replay_id"] for _, body, _ in results}) == 1
    assert sum(1 for _, _, headers in results if headers.get("Idempotent-Replayed")) == 7
    assert await pool.fetchval("SELECT generation FROM deliveries WHERE id = $1",
                               made.delivery_id) == 1


async def test_metrics_count_replays_by_outcome(admin: AdminApp, pool: asyncpg.Pool) -> None:
    endpoint = await _endpoint(pool)
    [made] = await insert_dead_deliveries(pool, endpoint, 1)
    await _replay(admin, made.event_id)
    async with admin.client.get("/metrics") as response:
        text = await response.text()
    assert response.status == 200
    assert 'postwire_replay_outcomes_total{kind="event",outcome="queued"}' in text
    for name in ("postwire_dead_letters", "postwire_bulk_replay_jobs",
                 "postwire_bulk_replay_remaining", "postwire_outbox_backlog"):
        assert f"\n{name}" in text
    async with admin.client.get("/readyz") as response:
        assert response.status == 200
