"""What the APIs say about purged history: 404 "past retention" for events, deliveries and
replays, dead letters listed after their delivery is gone, and the storage endpoint."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
import pytest_asyncio

from shared.core.ids import new_id
from shared.core.retention import RetentionPolicy, day_start, partition_name
from shared.core.timefmt import format_ts
from shared.retention.loop import run_locked_round
from shared.retention.seed import seed_day
from tests.conftest import ServiceEnvFactory
from tests.support.admin_app import AdminApp
from tests.support.ingest_app import Ingest, running_ingest
from tests.support.seeding import insert_endpoint

pytestmark = pytest.mark.asyncio(loop_scope="session")

POLICY = RetentionPolicy(history_days=30, dead_letter_days=90, audit_days=None, ahead_days=7)
TODAY = datetime.now(UTC).date()
OLD_DAY = TODAY - timedelta(days=45)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def purged(database_url: str) -> dict[str, str]:
    """A day 45 days old with one dead delivery (and its dead letter), then purged."""
    conn = await asyncpg.connect(database_url)
    try:
        endpoint = await insert_endpoint(conn, account_id="acct_old", url="http://127.0.0.1:9/h")
        seeded = await seed_day(conn, OLD_DAY, 10, endpoint_id=endpoint.id,
                                account_id=endpoint.account_id)
        await conn.execute("UPDATE deliveries SET status = 'dead' WHERE id = $1",
                           seeded.first_delivery_id)
        await conn.execute(
            "INSERT INTO dead_letters (delivery_id, event_id, endpoint_id, account_id, type,"
            " reason, attempt_count, dead_at) VALUES ($1, $2, $3, $4, 'invoice.paid',"
            " 'retries_exhausted', 8, $5)", seeded.first_delivery_id, seeded.first_event_id,
            endpoint.id, endpoint.account_id, day_start(OLD_DAY) + timedelta(hours=30))
    finally:
        await conn.close()
    for _ in range(50):  # a service's own round may hold the lock (and drop the day itself)
        await run_locked_round(database_url, POLICY)
        if not await _partition_exists(database_url, partition_name("events", OLD_DAY)):
            break
        await asyncio.sleep(0.1)
    else:
        pytest.fail("the old day was not dropped")
    return {"event_id": seeded.first_event_id, "delivery_id": seeded.first_delivery_id,
            "endpoint_id": endpoint.id}


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def ingest(service_env: ServiceEnvFactory) -> AsyncIterator[Ingest]:
    async with running_ingest(service_env()) as api:
        yield api


async def test_a_purged_event_is_404_past_retention(ingest: Ingest,
                                                    purged: dict[str, str]) -> None:
    status, body = await ingest.call("GET", f"/v1/events/{purged['event_id']}")
    assert status == 404
    assert body["error"]["type"] == "not_found"
    assert "past retention" in body["error"]["message"]
    assert OLD_DAY.isoformat() in body["error"]["message"]
    status, body = await ingest.call("GET", f"/v1/deliveries/{purged['delivery_id']}/attempts")
    assert status == 404 and "past retention" in body["error"]["message"]


async def test_an_unknown_recent_event_is_a_plain_404(ingest: Ingest,
                                                      purged: dict[str, str]) -> None:
    status, body = await ingest.call("GET", f"/v1/events/{new_id('evt')}")
    assert status == 404
    assert "past retention" not in body["error"]["message"]


async def test_replaying_a_dead_letter_whose_event_is_purged_is_refused(
        admin: AdminApp, purged: dict[str, str]) -> None:
    status, body, _ = await admin.call("POST", f"/admin/v1/events/{purged['event_id']}/replay",
                                       {"reason": "merchant fixed the endpoint"})
    assert status == 404
    assert body["error"]["param"] == "event_id"
    message = body["error"]["message"]
    assert "past retention" in message and "can no longer be replayed" in message
    status, body, _ = await admin.call("GET", f"/admin/v1/events/{purged['event_id']}")
    assert status == 404 and "past retention" in body["error"]["message"]


async def test_the_dead_letter_outlives_its_purged_delivery(
        admin: AdminApp, purged: dict[str, str]) -> None:
    status, body, _ = await admin.call(
        "GET", f"/admin/v1/dead-letters?endpoint_id={purged['endpoint_id']}")
    assert status == 200
    [letter] = body["data"]
    assert letter["delivery_id"] == purged["delivery_id"]
    assert letter["delivery_status"] is None  # the delivery itself is past retention
    assert letter["replay_count"] == 0


async def test_storage_endpoint_shows_tables_and_oldest_retained_day(
        admin: AdminApp, ingest: Ingest, purged: dict[str, str], database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        endpoint = await insert_endpoint(conn, account_id="acct_new", url="http://127.0.0.1:9/h")
        young = TODAY - timedelta(days=3)
        await seed_day(conn, young, 50, endpoint_id=endpoint.id, account_id="acct_new")
        await conn.execute("ANALYZE events")
    finally:
        await conn.close()
    status, body, _ = await admin.call("GET", "/admin/v1/storage")
    assert status == 200
    tables = {t["table"]: t for t in body["tables"]}
    assert {"events", "deliveries", "attempts", "dead_letters", "audit_log"} <= set(tables)
    assert tables["events"]["partitions"] >= 9  # the young day, yesterday..+7 days
    assert tables["events"]["approx_rows"] >= 50
    for table in tables.values():
        assert table["total_bytes"] == table["table_bytes"] + table["index_bytes"] > 0
    assert body["oldest_retained_day"] == young.isoformat()
    assert body["retention"]["events_days"] == 30
    assert body["retention"]["audit_days"] is None
    assert body["horizon"]["events"] == format_ts(day_start(OLD_DAY + timedelta(days=1)))
    assert not await _partition_exists(database_url, partition_name("events", OLD_DAY))


async def _partition_exists(dsn: str, name: str) -> bool:
    conn = await asyncpg.connect(dsn)
    try:
        return bool(await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", name))
    finally:
        await conn.close()


async def test_every_service_reports_its_retention_rounds(admin: AdminApp,
                                                          ingest: Ingest) -> None:
    for client in (admin.client, ingest.client):
        async with client.get("/metrics") as response:
            text = await response.text()
        assert "postwire_retention_rounds_total" in text
        assert "postwire_retention_days_dropped_total" in text
        assert "postwire_retention_rows_deleted_total" in text
    async with admin.client.get("/metrics") as response:
        text = await response.text()
    ran = [line for line in text.splitlines()
           if line.startswith("postwire_retention_rounds_total{")]
    # the app's round at start either ran (ok) or found another process's round (skipped)
    assert sum(float(line.rsplit(" ", 1)[1]) for line in ran) >= 1
