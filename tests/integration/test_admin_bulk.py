"""Bulk replay against real Postgres and Kafka: matching, progress, pacing, skips, cancel,
several admin processes on one job, and request validation."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import Any

import asyncpg
import pytest

from services.dlq_replay.jobs import create_bulk_job, run_step
from services.dlq_replay.schemas import parse_bulk_replay
from shared.core.ids import new_id
from shared.core.timefmt import format_ts, utcnow
from tests.conftest import ServiceEnvFactory
from tests.support.admin_app import AdminApp, running_admin
from tests.support.seeding import SeededEndpoint, insert_dead_deliveries, insert_endpoint

pytestmark = pytest.mark.asyncio(loop_scope="session")

URL = "http://127.0.0.1:9/hook"


ADMIN_ENV = {"ADMIN_JOB_POLL_S": "0.1"}
SERVICE_POOL = True  # the pool fixture encodes jsonb (a job's filter) like the services'


async def _endpoint(pool: asyncpg.Pool, **kwargs: Any) -> SeededEndpoint:
    return await insert_endpoint(pool, account_id=f"acct_{uuid.uuid4().hex[:8]}", url=URL,
                                 **kwargs)


async def _start(admin: AdminApp, filter_: dict[str, str], rate: int = 1000,
                 reason: str = "outage window") -> dict[str, Any]:
    status, job, _ = await admin.call("POST", "/admin/v1/replays", {
        "reason": reason, "filter": filter_, "max_per_second": rate})
    assert status == 202, job
    return dict(job)


async def _wait_status(admin: AdminApp, job_id: str, wanted: str,
                       timeout_s: float = 30.0) -> dict[str, Any]:
    async with asyncio.timeout(timeout_s):
        while True:
            _, job, _ = await admin.call("GET", f"/admin/v1/replays/{job_id}")
            if job["status"] == wanted:
                return dict(job)
            await asyncio.sleep(0.05)


async def test_bulk_replay_queues_every_match_once_and_reports_progress(
        admin: AdminApp, pool: asyncpg.Pool) -> None:
    endpoint = await _endpoint(pool)
    other = await _endpoint(pool)
    made = await insert_dead_deliveries(pool, endpoint, 40)
    await insert_dead_deliveries(pool, other, 5)  # not matched by the filter
    job = await _start(admin, {"endpoint_id": endpoint.id})
    assert job["id"].startswith("rpl_")
    assert (job["status"], job["matched"]) == ("running", 40)
    done = await _wait_status(admin, job["id"], "completed")
    assert (done["matched"], done["queued"], done["skipped"]) == (40, 40, 0)
    assert (done["created_by"], done["reason"]) == ("admin", "outage window")
    rows = await pool.fetch(
        "SELECT d.generation, dl.replay_count FROM deliveries d JOIN dead_letters dl"
        " ON dl.delivery_id = d.id WHERE d.id = ANY($1::text[])", [m.delivery_id for m in made])
    assert {(r["generation"], r["replay_count"]) for r in rows} == {(1, 1)}
    assert await pool.fetchval("SELECT count(*) FROM deliveries WHERE endpoint_id = $1"
                               " AND status = 'dead'", other.id) == 5
    audit = await pool.fetchrow("SELECT operator, action, reason FROM audit_log"
                                " WHERE target = $1", job["id"])
    assert tuple(audit) == ("admin", "replay.bulk.start", "outage window")


async def test_bulk_replay_keeps_to_its_rate(admin: AdminApp, pool: asyncpg.Pool) -> None:
    endpoint = await _endpoint(pool)
    await insert_dead_deliveries(pool, endpoint, 60)
    job = await _start(admin, {"endpoint_id": endpoint.id}, rate=20)
    await _wait_status(admin, job["id"], "completed", timeout_s=10)
    stamps = sorted(r["updated_at"] for r in await pool.fetch(
        "SELECT updated_at FROM deliveries WHERE endpoint_id = $1", endpoint.id))
    busiest = max(sum(1 for t in stamps if start <= t < start + timedelta(seconds=1))
                  for start in stamps)
    assert busiest <= 20
    assert stamps[-1] - stamps[0] >= timedelta(seconds=2)  # 60 at 20/s cannot take under 2 s


async def test_deliveries_that_moved_meanwhile_are_skipped(
        admin: AdminApp, pool: asyncpg.Pool) -> None:
    endpoint = await _endpoint(pool)
    made = await insert_dead_deliveries(pool, endpoint, 10)
    job = await _start(admin, {"endpoint_id": endpoint.id}, rate=5)
    moved = [m.delivery_id for m in made[-3:]]
    await pool.execute("UPDATE deliveries SET status = 'pending' WHERE id = ANY($1::text[])",
                       moved)
    done = await _wait_status(admin, job["id"], "completed", timeout_s=10)
    assert (done["matched"], done["queued"], done["skipped"]) == (10, 7, 3)
    assert await pool.fetchval("SELECT max(generation) FROM deliveries WHERE id = ANY($1)",
                               moved) == 0


async def test_cancel_stops_the_job_and_is_audited(admin: AdminApp, pool: asyncpg.Pool) -> None:
    endpoint = await _endpoint(pool)
    await insert_dead_deliveries(pool, endpoint, 50)
    job = await _start(admin, {"endpoint_id": endpoint.id}, rate=4)
    await asyncio.sleep(0.6)
    status, cancelled, _ = await admin.call(
        "POST", f"/admin/v1/replays/{job['id']}/cancel", {"reason": "wrong window"})
    assert (status, cancelled["status"]) == (200, "cancelled")
    queued_at_cancel = await pool.fetchval(
        "SELECT count(*) FROM deliveries WHERE endpoint_id = $1 AND generation = 1", endpoint.id)
    assert 0 < queued_at_cancel < 50
    assert cancelled["queued"] == queued_at_cancel
    await asyncio.sleep(1.0)
    assert await pool.fetchval("SELECT count(*) FROM deliveries WHERE endpoint_id = $1"
                               " AND generation = 1", endpoint.id) == queued_at_cancel
    audit = await pool.fetchrow("SELECT operator, reason FROM audit_log WHERE target = $1"
                                " AND action = 'replay.bulk.cancel'", job["id"])
    assert tuple(audit) == ("admin", "wrong window")
    again = await admin.call("POST", f"/admin/v1/replays/{job['id']}/cancel")
    assert (again[0], again[1]["status"]) == (200, "cancelled")
    assert await pool.fetchval("SELECT count(*) FROM audit_log WHERE target = $1"
                               " AND action = 'replay.bulk.cancel'", job["id"]) == 1


async def test_cancelling_a_finished_job_is_a_conflict(admin: AdminApp, pool: asyncpg.Pool) -> None:
    endpoint = await _endpoint(pool)
    job = await _start(admin, {"endpoint_id": endpoint.id})
    assert (job["status"], job["matched"]) == ("running", 0)  # nothing matched: the 202 says
    done = await _wait_status(admin, job["id"], "completed", timeout_s=10)  # running anyway
    assert (done["queued"], done["skipped"]) == (0, 0)
    status, body, _ = await admin.call("POST", f"/admin/v1/replays/{job['id']}/cancel")
    assert (status, body["error"]["type"]) == (409, "conflict")


async def test_two_admin_processes_never_queue_a_delivery_twice(
        admin: AdminApp, pool: asyncpg.Pool, service_env: ServiceEnvFactory) -> None:
    endpoint = await _endpoint(pool)
    made = await insert_dead_deliveries(pool, endpoint, 300)
    async with running_admin(service_env(ADMIN_JOB_POLL_S="0.05")) as second:
        job = await _start(admin, {"endpoint_id": endpoint.id}, rate=150)
        for _ in range(4):
            await asyncio.sleep(0.3)
            # the lease lapses mid-walk (as after a long pause): both processes race for it
            # while the old owner may still be stepping
            await pool.execute("UPDATE replay_jobs SET lease_owner = NULL,"
                               " lease_until = now() - interval '1 second' WHERE id = $1"
                               " AND status = 'running'", job["id"])
        done = await _wait_status(second, job["id"], "completed", timeout_s=20)
    assert (done["queued"], done["skipped"]) == (300, 0)
    generations = await pool.fetch("SELECT generation FROM deliveries WHERE id = ANY($1)",
                                   [m.delivery_id for m in made])
    assert {r["generation"] for r in generations} == {1}


async def test_a_worker_that_lost_its_lease_cannot_step(pool: asyncpg.Pool) -> None:
    endpoint = await _endpoint(pool)
    made = await insert_dead_deliveries(pool, endpoint, 5)
    request = parse_bulk_replay({"reason": "r", "filter": {"endpoint_id": endpoint.id}})
    async with pool.acquire() as conn, conn.transaction():
        job = await create_bulk_job(conn, operator="tester", request=request)
        await conn.execute("UPDATE replay_jobs SET lease_owner = 'worker-b',"
                           " lease_until = now() + interval '1 minute' WHERE id = $1", job["id"])
    async with pool.acquire() as conn, conn.transaction():
        step = await run_step(conn, job_id=job["id"], owner="worker-a", lease_s=5, batch=5)
    assert step.running is False and step.outcomes == []
    assert await pool.fetchval("SELECT position FROM replay_jobs WHERE id = $1", job["id"]) == 0
    assert await pool.fetchval("SELECT max(generation) FROM deliveries WHERE id = ANY($1)",
                               [m.delivery_id for m in made]) == 0
    async with pool.acquire() as conn, conn.transaction():
        step = await run_step(conn, job_id=job["id"], owner="worker-b", lease_s=5, batch=5)
    assert [o.outcome for o in step.outcomes] == ["queued"] * 5 and step.running is False


async def test_a_stopped_process_hands_its_job_over(
        pool: asyncpg.Pool, service_env: ServiceEnvFactory) -> None:
    endpoint = await _endpoint(pool)
    made = await insert_dead_deliveries(pool, endpoint, 30)
    async with running_admin(service_env(ADMIN_JOB_POLL_S="0.05")) as first:
        job = await _start(first, {"endpoint_id": endpoint.id}, rate=10)
        await asyncio.sleep(1.2)
    # the first process stopped gracefully and released its lease; a new one resumes at once
    async with running_admin(service_env(ADMIN_JOB_POLL_S="0.05")) as second:
        done = await _wait_status(second, job["id"], "completed", timeout_s=10)
    assert (done["queued"], done["skipped"]) == (30, 0)
    generations = await pool.fetch("SELECT generation FROM deliveries WHERE id = ANY($1)",
                                   [m.delivery_id for m in made])
    assert {r["generation"] for r in generations} == {1}


@pytest.mark.parametrize(("body", "param"), [
    ({"filter": {}}, "reason"),
    ({"reason": "x", "max_per_second": 0}, "max_per_second"),
    ({"reason": "x", "max_per_second": 10001}, "max_per_second"),
    ({"reason": "x", "max_per_second": "fast"}, "max_per_second"),
    ({"reason": "x", "filter": {"color": "red"}}, "filter.color"),
    ({"reason": "x", "filter": {"endpoint_id": "nope"}}, "filter.endpoint_id"),
    ({"reason": "x", "filter": {"since": "2026-01-02T00:00:00Z",
                                "until": "2026-01-01T00:00:00Z"}}, "filter.since"),
    ({"reason": "x", "filter": []}, "filter"),
    ({"reason": "x", "speed": 3}, "speed"),
])
async def test_invalid_bulk_bodies_are_400(
        admin: AdminApp, body: dict[str, Any], param: str) -> None:
    status, answer, _ = await admin.call("POST", "/admin/v1/replays", body)
    assert (status, answer["error"]["type"], answer["error"]["param"]) == (
        400, "invalid_request", param)


async def test_unknown_or_malformed_replay_ids_are_404(admin: AdminApp) -> None:
    for replay_id in (new_id("rpl"), "rpl_123", "evt_01JD0000000000000000000000"):
        status, body, _ = await admin.call("GET", f"/admin/v1/replays/{replay_id}")
        assert (status, body["error"]["type"]) == (404, "not_found")
        status, body, _ = await admin.call("POST", f"/admin/v1/replays/{replay_id}/cancel")
        assert (status, body["error"]["type"]) == (404, "not_found")


async def test_an_event_replay_id_can_be_looked_up(admin: AdminApp, pool: asyncpg.Pool) -> None:
    endpoint = await _endpoint(pool)
    [made] = await insert_dead_deliveries(pool, endpoint, 1)
    _, body, _ = await admin.call("POST", f"/admin/v1/events/{made.event_id}/replay",
                                  {"reason": "one"})
    status, job, _ = await admin.call("GET", f"/admin/v1/replays/{body['replay_id']}")
    assert status == 200
    assert (job["status"], job["kind"], job["matched"], job["queued"]) == (
        "completed", "event", 1, 1)


async def test_a_retried_bulk_request_with_its_key_creates_one_job(
        admin: AdminApp, pool: asyncpg.Pool) -> None:
    endpoint = await _endpoint(pool)
    await insert_dead_deliveries(pool, endpoint, 3)
    body = {"reason": "retry-safe", "filter": {"endpoint_id": endpoint.id}}
    key = {"Idempotency-Key": f"bulk-{uuid.uuid4()}"}
    first = await admin.call("POST", "/admin/v1/replays", body, headers=key)
    again = await admin.call("POST", "/admin/v1/replays", body, headers=key)
    assert (first[0], again[0]) == (202, 202)
    assert again[1]["id"] == first[1]["id"] and again[2].get("Idempotent-Replayed") == "true"
    assert await pool.fetchval("SELECT count(*) FROM audit_log WHERE action = 'replay.bulk.start'"
                               " AND details->'filter'->>'endpoint_id' = $1", endpoint.id) == 1
    other = await admin.call("POST", "/admin/v1/replays", {**body, "reason": "another"},
                             headers=key)
    assert (other[0], other[1]["error"]["type"]) == (409, "idempotency_conflict")


async def test_bulk_filter_by_type_and_dead_at_window(admin: AdminApp, pool: asyncpg.Pool) -> None:
    endpoint = await _endpoint(pool)
    start = utcnow().replace(microsecond=0) - timedelta(hours=3)
    inside = await insert_dead_deliveries(pool, endpoint, 4, event_type="invoice.paid",
                                          dead_at=start + timedelta(minutes=30))
    await insert_dead_deliveries(pool, endpoint, 2, event_type="invoice.paid",
                                 dead_at=start - timedelta(seconds=1))  # before since
    await insert_dead_deliveries(pool, endpoint, 2, event_type="invoice.paid",
                                 dead_at=start + timedelta(hours=1))  # at until: exclusive
    await insert_dead_deliveries(pool, endpoint, 3, event_type="invoice.voided",
                                 dead_at=start + timedelta(minutes=30))  # other type
    job = await _start(admin, {"account_id": endpoint.account_id, "type": "invoice.paid",
                               "since": format_ts(start) or "",
                               "until": format_ts(start + timedelta(hours=1)) or ""})
    assert job["matched"] == 4
    done = await _wait_status(admin, job["id"], "completed")
    assert (done["queued"], done["skipped"]) == (4, 0)
    queued = await pool.fetch("SELECT id FROM deliveries WHERE account_id = $1 AND generation = 1",
                              endpoint.account_id)
    assert {r["id"] for r in queued} == {m.delivery_id for m in inside}
