"""The online move to partitioned history (migrations 0006-0008) on a database that already
holds data while writers keep writing: nothing is lost, no write fails, validation does not
wait for open write transactions, the old indexes are adopted rather than rebuilt, and new
rows land in daily partitions once the cutover has passed."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import asyncpg
import pytest
import pytest_asyncio

from deploy.embedded.stack import EmbeddedStack
from shared.adapters.pg.migrations import apply_migrations, load_migrations
from shared.core.ids import lowest_id_at, new_id

pytestmark = pytest.mark.asyncio(loop_scope="session")

CUTOVER_STEP = "0006_history_cutover"


@pytest_asyncio.fixture(loop_scope="session")
async def dsn(stack: EmbeddedStack) -> AsyncIterator[str]:
    name = f"mig_{uuid.uuid4().hex}"
    admin = await asyncpg.connect(stack.postgres.dsn_for("postgres"))
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield stack.postgres.dsn_for(name)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def _apply_through(dsn: str, last: str) -> None:
    """Apply the shipped migrations up to and including ``last``, recorded the way
    ``apply_migrations`` records them (so it carries on from there)."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version text PRIMARY KEY,"
            " checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())")
        done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
        for migration in load_migrations():
            if migration.version not in done:
                async with conn.transaction():
                    await conn.execute(migration.sql)
                    await conn.execute("INSERT INTO schema_migrations VALUES ($1, $2)",
                                       migration.version, migration.checksum)
            if migration.version == last:
                return
    finally:
        await conn.close()


def _before(version: str) -> str:
    versions = [m.version for m in load_migrations()]
    return versions[versions.index(version) - 1]


async def _write_history(conn: asyncpg.Connection, endpoint_id: str, n: int) -> None:
    """n events, each with a succeeded delivery and its attempt (as the services write them)."""
    events = [new_id("evt") for _ in range(n)]
    deliveries = [new_id("dlv") for _ in range(n)]
    attempts = [new_id("att") for _ in range(n)]
    async with conn.transaction():
        await conn.execute(
            "INSERT INTO events (id, account_id, type, body, created_at, delivery_count)"
            " SELECT e, 'acct_m', 'invoice.paid', '\\x7b7d', now(), 1 FROM unnest($1::text[]) e",
            events)
        await conn.execute(
            "INSERT INTO deliveries (id, event_id, endpoint_id, account_id, status, created_at,"
            " updated_at) SELECT d, e, $3, 'acct_m', 'succeeded', now(), now()"
            " FROM unnest($1::text[], $2::text[]) AS t(d, e)", deliveries, events, endpoint_id)
        await conn.execute(
            "INSERT INTO attempts (id, delivery_id, attempt, started_at, duration_ms, status_code)"
            " SELECT a, d, 1, now(), 10, 200 FROM unnest($1::text[], $2::text[]) AS t(a, d)",
            attempts, deliveries)


async def test_online_migration_keeps_every_row_and_every_writer(dsn: str) -> None:
    await _apply_through(dsn, _before(CUTOVER_STEP))
    conn = await asyncpg.connect(dsn)
    writer = await asyncpg.connect(dsn)
    try:
        endpoint_id = new_id("ep")
        await conn.execute(
            "INSERT INTO endpoints (id, account_id, url, event_types, secret, created_at,"
            " updated_at) VALUES ($1, 'acct_m', 'http://127.0.0.1:9/h', ARRAY['*'], 'whsec_x',"
            " now(), now())", endpoint_id)
        await _write_history(conn, endpoint_id, 3000)
        old_index = await conn.fetchrow(
            "SELECT oid, relfilenode FROM pg_class WHERE relname = 'deliveries_event_idx'")

        failures: list[BaseException] = []
        written = 0
        stop = asyncio.Event()

        async def keep_writing() -> None:
            nonlocal written
            while not stop.is_set():
                try:
                    await _write_history(writer, endpoint_id, 5)
                    written += 5
                except asyncpg.PostgresError as exc:  # pragma: no cover - reported below
                    failures.append(exc)
                await asyncio.sleep(0.002)

        task = asyncio.create_task(keep_writing())
        await _apply_through(dsn, CUTOVER_STEP)
        # Step 2 must not wait for a write transaction that is still open.
        open_tx = await asyncpg.connect(dsn)
        tx = open_tx.transaction()
        await tx.start()
        await _write_history(open_tx, endpoint_id, 1)
        validate = next(m.version for m in load_migrations() if m.version > CUTOVER_STEP)
        await asyncio.wait_for(_apply_through(dsn, validate), timeout=20)
        await tx.commit()
        await open_tx.close()
        await apply_migrations(dsn)
        await asyncio.sleep(0.2)
        stop.set()
        await task
        assert failures == []
        assert written > 0

        total = 3000 + written + 1
        for table in ("events", "deliveries", "attempts"):
            assert await conn.fetchval(f"SELECT count(*) FROM {table}") == total
            assert await conn.fetchval(
                "SELECT relkind::text FROM pg_class WHERE relname = $1", table) == "p"
            assert await conn.fetchval(
                "SELECT count(*) FROM pg_inherits WHERE inhrelid = $1::regclass"
                " AND inhparent = $2::regclass", f"{table}_legacy", table) == 1
        # the old index became the legacy partition's index: same object, same file
        adopted = await conn.fetchrow(
            "SELECT oid, relfilenode FROM pg_class WHERE relname = 'deliveries_legacy_event_idx'")
        assert adopted is not None and old_index is not None
        assert (adopted["oid"], adopted["relfilenode"]) == (old_index["oid"],
                                                            old_index["relfilenode"])
        assert await conn.fetchval(
            "SELECT count(*) FROM pg_constraint WHERE conrelid = 'deliveries_legacy'::regclass"
            " AND contype = 'f'") == 1  # the endpoint FK, adopted as well
        # rows made after the cutover go to daily partitions
        cutover = await conn.fetchval("SELECT cutover_at FROM partition_cutover")
        later = int((cutover + timedelta(hours=1)).timestamp() * 1000)
        event_id = lowest_id_at("evt", later)[:-4] + "0001"
        await conn.execute(
            "INSERT INTO events (id, account_id, type, body, created_at, delivery_count)"
            " VALUES ($1, 'acct_m', 't', '\\x7b7d', now(), 0)", event_id)
        assert await conn.fetchval(
            "SELECT tableoid::regclass::text FROM events WHERE id = $1", event_id) \
            == f"events_p{cutover:%Y%m%d}"
        # a database with history keeps its cutover two days ahead: writers had a day's slack
        assert await conn.fetchval(
            "SELECT $1::timestamptz - date_trunc('day', now(), 'UTC')", cutover) \
            == timedelta(days=2)
    finally:
        await writer.close()
        await conn.close()
