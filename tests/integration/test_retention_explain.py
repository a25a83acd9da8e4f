"""EXPLAIN evidence that the hot lookups read only the partitions they need.

Six days of history (5,000 events, deliveries and attempts a day) are seeded and analysed;
then the statements the services really run (captured from their own functions, or the
dispatcher's claim SQL itself) are run under ``EXPLAIN (ANALYZE, FORMAT JSON)`` and the
partitions they actually executed against are collected: get event, the event's deliveries,
the event list filtered by account and time, the claim (read and lease) and the dead-letter
list each touch only the days of the rows they return.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from typing import Any, cast

import asyncpg
import pytest
import pytest_asyncio

from services.dispatcher import claims, outcome_sql
from services.dlq_replay.reads import DeadLetterQuery, list_dead_letters
from services.ingest import events_repo
from shared.core.ids import new_id
from shared.core.retention import day_start, partition_name
from shared.retention.seed import seed_day
from tests.support.seeding import insert_endpoint

pytestmark = pytest.mark.asyncio(loop_scope="session")

TODAY = datetime.now(UTC).date()
DAYS = [TODAY - timedelta(days=n) for n in range(6, 0, -1)]
TARGET = DAYS[2]
PER_DAY = 5000


class Recorder:
    """Stands in for a connection or pool: records each statement, answers from the real one."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn
        self.calls: list[tuple[str, tuple[Any, ...]]] = []

    async def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        self.calls.append((sql, args))
        return list(await self.conn.fetch(sql, *args))

    async def fetchrow(self, sql: str, *args: Any) -> asyncpg.Record | None:
        self.calls.append((sql, args))
        return await self.conn.fetchrow(sql, *args)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def conn(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(database_url)
    endpoint = await insert_endpoint(connection, account_id="acct_explain",
                                     url="http://127.0.0.1:9/h")
    for day in DAYS:
        await seed_day(connection, day, PER_DAY, endpoint_id=endpoint.id,
                       account_id="acct_explain")
    await connection.execute(
        "UPDATE deliveries SET status = 'dead' WHERE id IN (SELECT id FROM deliveries"
        " WHERE id >= $1 ORDER BY id LIMIT 3)", await _first(connection, "deliveries", TARGET))
    await connection.execute(
        "INSERT INTO dead_letters (delivery_id, event_id, endpoint_id, account_id, type, reason,"
        " attempt_count, dead_at) SELECT id, event_id, endpoint_id, account_id, 'invoice.paid',"
        " 'retries_exhausted', 1, now() FROM deliveries WHERE status = 'dead'")
    await connection.execute("ANALYZE")
    yield connection
    await connection.close()


async def _first(conn: asyncpg.Connection, table: str, day: date) -> str:
    value = await conn.fetchval(f'SELECT min(id) FROM "{partition_name(table, day)}"')
    assert isinstance(value, str)
    return value


async def _middle(conn: asyncpg.Connection, table: str, day: date) -> str:
    """An id from the middle of the day (the first and last minute of a day also read the
    neighbouring day: the id windows allow a minute of clock slack)."""
    value = await conn.fetchval(
        f'SELECT id FROM "{partition_name(table, day)}" ORDER BY id OFFSET $1 LIMIT 1',
        PER_DAY // 2)
    assert isinstance(value, str)
    return value


def _executed(plan: dict[str, Any]) -> set[str]:
    """Relations a plan node (or any below it) scanned at least once."""
    found: set[str] = set()
    if "Relation Name" in plan and plan.get("Actual Loops", 0) > 0:
        found.add(plan["Relation Name"])
    for child in plan.get("Plans", []):
        found |= _executed(child)
    return found


async def _scanned(conn: asyncpg.Connection, sql: str, *args: Any) -> set[str]:
    """The partitions of events, deliveries and attempts that ``sql`` read (run, then rolled
    back: statements that write are measured too)."""
    tx = conn.transaction()
    await tx.start()
    try:
        raw = await conn.fetchval(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}", *args)
    finally:
        await tx.rollback()
    relations = _executed(json.loads(raw)[0]["Plan"])
    return {r for r in relations if r.startswith(("events_", "deliveries_", "attempts_"))}


def _day(day: date) -> set[str]:
    return {partition_name(t, day) for t in ("events", "deliveries", "attempts")}


async def test_get_event_and_its_deliveries_read_one_day(conn: asyncpg.Connection) -> None:
    event_id = await _middle(conn, "events", TARGET)
    recorder = Recorder(conn)
    event = await events_repo.fetch_event(cast(asyncpg.Connection, recorder), event_id)
    deliveries = await events_repo.fetch_event_deliveries(cast(asyncpg.Connection, recorder),
                                                          event_id)
    assert event is not None and len(deliveries) == 1
    for sql, args in recorder.calls:
        assert await _scanned(conn, sql, *args) <= _day(TARGET), sql


async def test_attempts_of_a_delivery_read_one_day(conn: asyncpg.Connection) -> None:
    delivery_id = await _first(conn, "deliveries", TARGET)
    recorder = Recorder(conn)
    rows = await events_repo.list_attempts(cast(asyncpg.Connection, recorder), delivery_id, 0, 21)
    assert len(rows) == 1
    [(sql, args)] = recorder.calls
    assert await _scanned(conn, sql, *args) == {partition_name("attempts", TARGET)}


async def test_event_list_filtered_by_time_reads_only_those_days(
        conn: asyncpg.Connection) -> None:
    since = day_start(TARGET) + timedelta(hours=2)
    recorder = Recorder(conn)
    where = events_repo.EventFilter("acct_explain", "invoice.paid", since,
                                    since + timedelta(hours=3), None)
    rows = await events_repo.list_events(cast(asyncpg.Connection, recorder), where, 21)
    assert len(rows) == 21
    assert all(since <= r["created_at"] < since + timedelta(hours=3) for r in rows)
    [(sql, args)] = recorder.calls
    assert await _scanned(conn, sql, *args) == {partition_name("events", TARGET)}
    # newest first without a time filter: an ordered scan from the newest partition (the empty
    # ones ahead cost one index probe each) that stops in the newest day; older days are unread
    recorder.calls.clear()
    rows = await events_repo.list_events(
        cast(asyncpg.Connection, recorder),
        events_repo.EventFilter("acct_explain", None, None, None, None), 21)
    [(sql, args)] = recorder.calls
    scanned = await _scanned(conn, sql, *args)
    assert partition_name("events", DAYS[-1]) in scanned
    assert not scanned & {partition_name("events", day) for day in DAYS[:-1]}


async def test_claim_reads_and_leases_only_the_days_of_its_deliveries(
        conn: asyncpg.Connection) -> None:
    ids = sorted([await _first(conn, "deliveries", TARGET),
                  await _first(conn, "deliveries", DAYS[-1])])
    await conn.execute("UPDATE deliveries SET status = 'pending' WHERE id = ANY($1::text[])", ids)
    spanned = {partition_name("deliveries", day) for day in DAYS[2:]}
    read = await _scanned(conn, claims._ROWS_SQL, ids, ids[0], ids[-1])
    assert {partition_name("deliveries", TARGET), partition_name("deliveries", DAYS[-1])} \
        <= read <= spanned
    until = datetime.now(UTC) + timedelta(seconds=30)
    leased = await _scanned(conn, claims._CLAIM_SQL, "explain-test", ids, [until, until],
                            ids[0], ids[-1])
    wanted = {partition_name("events", TARGET), partition_name("events", DAYS[-1])}
    assert wanted <= leased <= spanned | wanted


async def test_dead_letter_list_reads_only_the_days_of_its_deliveries(
        conn: asyncpg.Connection) -> None:
    recorder = Recorder(conn)
    page = await list_dead_letters(cast(asyncpg.Pool, recorder),
                                   DeadLetterQuery(account_id="acct_explain"), limit=20,
                                   cursor=None)
    assert len(page.to_json()["data"]) == 3
    [(sql, args)] = recorder.calls
    assert await _scanned(conn, sql, *args) == {partition_name("deliveries", TARGET)}


def _blocks(plan: dict[str, Any], found: dict[str, int]) -> dict[str, int]:
    """Shared blocks (hit or read) per relation that a plan node scanned, summed."""
    name = plan.get("Relation Name")
    if name is not None and plan.get("Actual Loops", 0) > 0:
        found[name] = (found.get(name, 0) + plan.get("Shared Hit Blocks", 0)
                       + plan.get("Shared Read Blocks", 0))
    for child in plan.get("Plans", []):
        _blocks(child, found)
    return found


async def test_claim_generic_plan_opens_only_the_days_its_batch_spans(
        conn: asyncpg.Connection) -> None:
    """The claim transaction runs generic plans (planning a custom one over every partition
    cost more than running it). The id bounds prune at executor start: a batch of one day
    opens that day only; a batch spanning days opens those days, and a day in between that
    holds none of the ids costs one index descent."""
    one_day = [r["id"] for r in await conn.fetch(
        f'SELECT id FROM "{partition_name("deliveries", TARGET)}" ORDER BY id'
        " OFFSET 100 LIMIT 200")]
    blocks = await _generic_read_blocks(conn, one_day)
    assert {n for n in blocks if n.startswith("deliveries_p")} \
        == {partition_name("deliveries", TARGET)}
    spanning = [*one_day, await _first(conn, "deliveries", DAYS[-1])]
    blocks = await _generic_read_blocks(conn, spanning)
    between = {partition_name("deliveries", day) for day in DAYS[3:-1]}
    assert {n for n in blocks if n.startswith("deliveries_p")} \
        == between | {partition_name("deliveries", TARGET), partition_name("deliveries", DAYS[-1])}
    assert max(blocks[n] for n in between) <= 4, blocks  # one descent each
    assert blocks[partition_name("deliveries", TARGET)] > 4  # the rows themselves


async def _generic_read_blocks(conn: asyncpg.Connection, ids: list[str]) -> dict[str, int]:
    """Blocks per relation of the claim read, run as the claim runs it (cached generic plan)."""
    literal = "ARRAY[" + ",".join(f"'{i}'" for i in ids) + "]::text[]"
    tx = conn.transaction()
    await tx.start()
    try:
        await conn.execute(claims._GENERIC_PLANS_SQL)
        await conn.execute("PREPARE claim_read(text[], text, text) AS "
                           + claims._ROWS_SQL.replace("$1::text[]", "$1"))
        raw = await conn.fetchval(
            "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) EXECUTE claim_read("
            f"{literal}, '{min(ids)}', '{max(ids)}')")
        await conn.execute("DEALLOCATE claim_read")
    finally:
        await tx.rollback()
    return _blocks(json.loads(raw)[0]["Plan"], {})


async def test_outcome_generic_plan_opens_only_the_day_of_its_batch(
        conn: asyncpg.Connection) -> None:
    """The outcome writer's pool plans generically (a custom plan was planned on every batch,
    which cost more than running it); the statement's id bounds prune at executor start, so
    a batch of one day locks, updates and reads that day's deliveries only."""
    ids = [r["id"] for r in await conn.fetch(
        f'SELECT id FROM "{partition_name("deliveries", TARGET)}" ORDER BY id'
        " OFFSET 100 LIMIT 3")]
    endpoint_id = await conn.fetchval("SELECT endpoint_id FROM deliveries WHERE id = $1", ids[0])

    def text_array(values: list[str]) -> str:
        return "ARRAY[" + ",".join(f"'{v}'" for v in values) + "]::text[]"

    sql = outcome_sql._RECORD_IF_CLEAN_SQL
    for n in range(13, 0, -1):  # the parameters' casts are the PREPARE's business
        sql = sql.replace(f"${n}::text[]", f"${n}")
    tx = conn.transaction()
    await tx.start()
    try:
        await conn.execute("SET LOCAL plan_cache_mode = force_generic_plan")
        await conn.execute(
            "PREPARE outcome_record(text[], text[], float8[], int[], text[], timestamptz[],"
            " int[], text[], text[], text, text, text, text[]) AS " + sql)
        raw = await conn.fetchval(
            "EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE outcome_record("
            f"{text_array(ids)}, {text_array(['succeeded'] * 3)},"
            " ARRAY[NULL,NULL,NULL]::float8[], ARRAY[200,200,200], ARRAY[NULL,NULL,NULL]::text[],"
            " ARRAY[now(),now(),now()], ARRAY[1,1,1], ARRAY[NULL,NULL,NULL]::text[],"
            f" {text_array([new_id('att') for _ in ids])}, 'nobody', '{ids[0]}', '{ids[-1]}',"
            f" {text_array([endpoint_id])})")
    finally:
        await tx.rollback()
    scanned = _executed(json.loads(raw)[0]["Plan"])
    assert {n for n in scanned if n.startswith("deliveries_p")} \
        == {partition_name("deliveries", TARGET)}
