"""Retention rounds on the real embedded Postgres: partitions ahead, expired days dropped,
open deliveries and unreplayed dead letters kept, dead letters and audit rows purged by their
own retention, one round at a time (advisory lock), and the SQL id floor equal to Python's."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta

import asyncpg
import pytest
import pytest_asyncio

from services.dlq_replay.requeue import queue_deliveries
from shared.core.ids import lowest_id_at, new_id
from shared.core.retention import RetentionPolicy, day_start, partition_name
from shared.retention import horizon, partitions
from shared.retention.loop import LOCK_ID, run_locked_round
from shared.retention.purge import RoundReport
from shared.retention.seed import seed_day
from tests.support.seeding import SeededEndpoint, insert_endpoint

pytestmark = pytest.mark.asyncio(loop_scope="session")

POLICY = RetentionPolicy(history_days=30, dead_letter_days=90, audit_days=None, ahead_days=3)
TODAY = datetime.now(UTC).date()


@pytest_asyncio.fixture(loop_scope="session")
async def conn(fresh_database_url: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(fresh_database_url)
    yield connection
    await connection.close()


async def _round(dsn: str, policy: RetentionPolicy = POLICY) -> RoundReport:
    report = await run_locked_round(dsn, policy)
    assert report is not None  # nobody else holds the lock in these tests
    return report


async def _exists(conn: asyncpg.Connection, name: str) -> bool:
    return bool(await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", name))


async def _endpoint(conn: asyncpg.Connection) -> SeededEndpoint:
    return await insert_endpoint(conn, account_id="acct_retention", url="http://127.0.0.1:9/h")


async def _kill(conn: asyncpg.Connection, delivery_ids: list[str], dead_at: datetime) -> None:
    """Make deliveries dead with a dead letter, as the dispatcher would."""
    await conn.execute("UPDATE deliveries SET status = 'dead' WHERE id = ANY($1::text[])",
                       delivery_ids)
    await conn.execute(
        "INSERT INTO dead_letters (delivery_id, event_id, endpoint_id, account_id, type, reason,"
        " attempt_count, dead_at) SELECT id, event_id, endpoint_id, account_id, 'invoice.paid',"
        " 'retries_exhausted', 1, $2 FROM deliveries WHERE id = ANY($1::text[])",
        delivery_ids, dead_at)


async def _day_ids(conn: asyncpg.Connection, day: date, n: int) -> list[str]:
    return [r["id"] for r in await conn.fetch(
        f'SELECT id FROM "{partition_name("deliveries", day)}" ORDER BY id LIMIT $1', n)]


async def test_sql_id_floor_matches_python(conn: asyncpg.Connection) -> None:
    for ms in (0, 1, 1_733_270_400_000, 1_796_410_557_752, 253_402_300_799_999):
        at = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)
        assert await conn.fetchval("SELECT postwire_id_floor('evt', $1)", at) \
            == lowest_id_at("evt", ms)


async def test_partitions_are_kept_ahead(conn: asyncpg.Connection,
                                         fresh_database_url: str) -> None:
    report = await _round(fresh_database_url)
    for offset in range(-1, POLICY.ahead_days + 1):
        day = TODAY + timedelta(days=offset)
        for table in ("events", "deliveries", "attempts"):
            assert await _exists(conn, partition_name(table, day)), (table, day)
    assert (await _round(fresh_database_url)).created == []  # idempotent
    assert report.dropped == [] and report.blocked == {}


async def test_purge_drops_expired_days_but_never_open_deliveries_or_dead_letters(
        conn: asyncpg.Connection, fresh_database_url: str) -> None:
    endpoint = await _endpoint(conn)
    old, blocked, next_day, young = (TODAY - timedelta(days=d) for d in (40, 35, 34, 10))
    for day in (old, blocked, next_day, young):
        await seed_day(conn, day, 200, endpoint_id=endpoint.id, account_id=endpoint.account_id)
    dead = await _day_ids(conn, old, 5)
    await _kill(conn, dead, day_start(old) + timedelta(hours=6))
    [retrying] = await _day_ids(conn, blocked, 1)
    await conn.execute("UPDATE deliveries SET status = 'retrying' WHERE id = $1", retrying)
    # a delivery made just after midnight for an event of the day before (same transaction)
    event_of_blocked = await conn.fetchval(
        f'SELECT id FROM "{partition_name("events", blocked)}" ORDER BY id DESC LIMIT 1')
    straddler = lowest_id_at("dlv", int(day_start(next_day).timestamp() * 1000))[:-4] + "ZZZZ"
    await conn.execute(
        "INSERT INTO deliveries (id, event_id, endpoint_id, account_id, status, created_at,"
        " updated_at) VALUES ($1, $2, $3, $4, 'pending', now(), now())",
        straddler, event_of_blocked, endpoint.id, endpoint.account_id)

    report = await _round(fresh_database_url)

    assert report.dropped == [old.isoformat()]
    assert report.blocked == {blocked.isoformat(): 2, next_day.isoformat(): 1}
    for table in ("events", "deliveries", "attempts"):
        assert not await _exists(conn, partition_name(table, old))
        assert await _exists(conn, partition_name(table, blocked))
        assert await _exists(conn, partition_name(table, young))
    # the dead letters of the dropped day are kept until their own retention (90 days)
    assert await conn.fetchval("SELECT count(*) FROM dead_letters") == 5
    # every open delivery still has its event
    assert await conn.fetchval(
        "SELECT count(*) FROM deliveries d JOIN events e ON e.id = d.event_id"
        " WHERE d.status IN ('pending', 'retrying')") == 2
    assert await horizon.read(conn, "events") == day_start(next_day + timedelta(days=1))

    await conn.execute("UPDATE deliveries SET status = 'succeeded' WHERE id = ANY($1::text[])",
                       [retrying, straddler])
    again = await _round(fresh_database_url)
    assert again.dropped == [blocked.isoformat(), next_day.isoformat()]
    assert again.blocked == {}
    assert await conn.fetchval("SELECT count(*) FROM events") == 200  # the young day only


async def test_dead_letters_and_audit_rows_follow_their_own_retention(
        conn: asyncpg.Connection, fresh_database_url: str) -> None:
    endpoint = await _endpoint(conn)
    day = TODAY - timedelta(days=5)
    await seed_day(conn, day, 10, endpoint_id=endpoint.id, account_id=endpoint.account_id)
    ids = await _day_ids(conn, day, 4)
    now = datetime.now(UTC)
    await _kill(conn, ids[:2], now - timedelta(days=91))
    await _kill(conn, ids[2:], now - timedelta(days=89))
    await conn.execute(
        "INSERT INTO audit_log (at, operator, action, target) VALUES"
        " ($1, 'ops', 'replay.event', 'evt_x'), (now(), 'ops', 'replay.event', 'evt_y')",
        now - timedelta(days=400))

    report = await _round(fresh_database_url)
    assert report.dead_letters_deleted == 2
    assert sorted(r["delivery_id"] for r in await conn.fetch(
        "SELECT delivery_id FROM dead_letters")) == sorted(ids[2:])
    assert report.audit_rows_deleted == 0  # audit is kept forever by default
    assert await conn.fetchval("SELECT count(*) FROM audit_log") == 2

    yearly = RetentionPolicy(30, None, 365, 3)
    report = await _round(fresh_database_url, yearly)
    assert report.audit_rows_deleted == 1 and report.dead_letters_deleted == 0
    assert await conn.fetchval("SELECT target FROM audit_log") == "evt_y"
    assert await conn.fetchval("SELECT count(*) FROM dead_letters") == 2


async def test_only_one_round_runs_at_a_time(conn: asyncpg.Connection,
                                             fresh_database_url: str) -> None:
    await conn.execute("SELECT pg_advisory_lock($1)", LOCK_ID)
    try:
        assert await run_locked_round(fresh_database_url, POLICY) is None
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", LOCK_ID)
    assert await run_locked_round(fresh_database_url, POLICY) is not None


async def test_an_interrupted_detach_is_finished_by_the_next_round(
        conn: asyncpg.Connection, fresh_database_url: str) -> None:
    endpoint = await _endpoint(conn)
    day = TODAY - timedelta(days=45)
    await seed_day(conn, day, 20, endpoint_id=endpoint.id, account_id=endpoint.account_id)
    # a purge that died after detaching attempts and before dropping it
    await conn.execute(f'ALTER TABLE attempts DETACH PARTITION "{partition_name("attempts", day)}"')
    report = await _round(fresh_database_url)
    assert report.dropped == [day.isoformat()]
    for table in ("events", "deliveries", "attempts"):
        assert not await _exists(conn, partition_name(table, day))


async def test_writes_go_on_while_a_day_is_dropped(conn: asyncpg.Connection,
                                                   fresh_database_url: str) -> None:
    """Inserts into today's partitions never fail or stall behind DETACH CONCURRENTLY."""
    endpoint = await _endpoint(conn)
    for offset in (50, 49, 48):
        await seed_day(conn, TODAY - timedelta(days=offset), 2000, endpoint_id=endpoint.id,
                       account_id=endpoint.account_id)
    writer = await asyncpg.connect(fresh_database_url)
    stop = asyncio.Event()
    written = 0

    async def write() -> None:
        nonlocal written
        while not stop.is_set():
            event_id = new_id("evt")
            async with writer.transaction():
                await writer.execute(
                    "INSERT INTO events (id, account_id, type, body, created_at, delivery_count)"
                    " VALUES ($1, 'a', 't', '\\x7b7d', now(), 1)", event_id)
                await writer.execute(
                    "INSERT INTO deliveries (id, event_id, endpoint_id, account_id, status,"
                    " created_at, updated_at) VALUES ($1, $2, $3, 'a', 'pending', now(), now())",
                    new_id("dlv"), event_id, endpoint.id)
            written += 1

    task = asyncio.create_task(write())
    try:
        report = await _round(fresh_database_url)
    finally:
        stop.set()
        await task
        await writer.close()
    assert len(report.dropped) == 3
    assert written > 0
    assert await conn.fetchval("SELECT count(*) FROM deliveries WHERE status = 'pending'") \
        == written


async def test_a_long_transaction_defers_the_drop_not_the_partitions_ahead(
        conn: asyncpg.Connection, fresh_database_url: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(partitions, "LOCK_TIMEOUT", "300ms")
    endpoint = await _endpoint(conn)
    day = TODAY - timedelta(days=44)
    await seed_day(conn, day, 20, endpoint_id=endpoint.id, account_id=endpoint.account_id)
    reader = await asyncpg.connect(fresh_database_url)
    try:
        long_tx = reader.transaction()
        await long_tx.start()
        assert await reader.fetchval("SELECT count(*) FROM attempts") == 20
        report = await _round(fresh_database_url)
        assert report.deferred and report.dropped == []
        assert await _exists(conn, partition_name("events", TODAY + timedelta(days=3)))
        assert await reader.fetchval("SELECT count(*) FROM events") == 20  # still readable
        await long_tx.commit()
    finally:
        await reader.close()
    report = await _round(fresh_database_url)
    assert not report.deferred
    for table in ("events", "deliveries", "attempts"):
        assert not await _exists(conn, partition_name(table, day))


async def test_a_replay_never_requeues_a_delivery_below_the_horizon(
        conn: asyncpg.Connection) -> None:
    """Once a purge has moved the horizon past a day (it does so before counting open
    deliveries), replays treat that day's deliveries as gone: nothing is requeued, so the
    day cannot be kept alive, or lose an open delivery, behind the purge's back."""
    endpoint = await _endpoint(conn)
    old, young = TODAY - timedelta(days=40), TODAY - timedelta(days=2)
    for day in (old, young):
        await seed_day(conn, day, 5, endpoint_id=endpoint.id, account_id=endpoint.account_id)
    old_ids, young_ids = await _day_ids(conn, old, 2), await _day_ids(conn, young, 2)
    await _kill(conn, old_ids + young_ids, datetime.now(UTC))
    await horizon.advance(conn, "events", day_start(old + timedelta(days=1)))
    async with conn.transaction():
        result = await queue_deliveries(conn, old_ids + young_ids, False)
    assert sorted(o.delivery_id for o in result.outcomes) == sorted(young_ids)
    assert {o.outcome for o in result.outcomes} == {"queued"}
    statuses = {r["id"]: r["status"] for r in await conn.fetch(
        "SELECT id, status FROM deliveries WHERE id = ANY($1::text[])", old_ids + young_ids)}
    assert [statuses[i] for i in old_ids] == ["dead", "dead"]
    assert [statuses[i] for i in young_ids] == ["pending", "pending"]


async def test_a_shorter_account_retention_deletes_only_that_accounts_closed_history(
        conn: asyncpg.Connection, fresh_database_url: str) -> None:
    short = await insert_endpoint(conn, account_id="acct_short", url="http://127.0.0.1:9/h")
    other = await insert_endpoint(conn, account_id="acct_other", url="http://127.0.0.1:9/h")
    old, young = TODAY - timedelta(days=10), TODAY - timedelta(days=2)
    await seed_day(conn, old, 1500, endpoint_id=short.id, account_id="acct_short")
    await seed_day(conn, old, 300, endpoint_id=other.id, account_id="acct_other", offset=5000)
    await seed_day(conn, young, 50, endpoint_id=short.id, account_id="acct_short")
    [open_id] = await _day_ids(conn, old, 1)
    await conn.execute("UPDATE deliveries SET status = 'retrying' WHERE id = $1", open_id)
    dead = (await _day_ids(conn, old, 3))[1:]
    await _kill(conn, dead, datetime.now(UTC))
    policy = RetentionPolicy(30, 90, None, 3, (("acct_short", 7),))

    report = await _round(fresh_database_url, policy)

    assert report.account_events_deleted == 1499
    counts = {r["account_id"]: r["n"] for r in await conn.fetch(
        "SELECT account_id, count(*) AS n FROM events GROUP BY account_id")}
    assert counts == {"acct_short": 1 + 50, "acct_other": 300}
    assert await conn.fetchval(
        "SELECT count(*) FROM deliveries WHERE account_id = 'acct_short'") == 51
    assert await conn.fetchval(
        "SELECT count(*) FROM attempts a JOIN deliveries d ON d.id = a.delivery_id"
        " WHERE d.account_id = 'acct_short'") == 51
    assert await conn.fetchval("SELECT status FROM deliveries WHERE id = $1", open_id) \
        == "retrying"
    assert await conn.fetchval("SELECT count(*) FROM dead_letters") == 2  # own retention
    assert (await _round(fresh_database_url, policy)).account_events_deleted == 0


async def test_a_replay_in_progress_holds_the_purge_and_keeps_its_day(
        conn: asyncpg.Connection, fresh_database_url: str) -> None:
    """A replay that started before the purge (even before any purge ever ran: no horizon row
    yet) makes the purge wait; it then sees the replayed delivery open and keeps the day."""
    endpoint = await _endpoint(conn)
    old = TODAY - timedelta(days=40)
    await seed_day(conn, old, 5, endpoint_id=endpoint.id, account_id=endpoint.account_id)
    [dead] = await _day_ids(conn, old, 1)
    await _kill(conn, [dead], datetime.now(UTC))
    replay = await asyncpg.connect(fresh_database_url)
    try:
        tx = replay.transaction()
        await tx.start()
        result = await queue_deliveries(replay, [dead], False)
        assert [o.outcome for o in result.outcomes] == ["queued"]
        purge = asyncio.create_task(_round(fresh_database_url))
        await asyncio.sleep(1.0)
        assert not purge.done()  # waiting for the replay's transaction
        await tx.commit()
        report = await asyncio.wait_for(purge, 30)
    finally:
        await replay.close()
    assert report.dropped == [] and report.blocked == {old.isoformat(): 1}
    assert await conn.fetchval("SELECT status FROM deliveries WHERE id = $1", dead) == "pending"
