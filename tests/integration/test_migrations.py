"""`postwire migrate` and the schema check of the services, on the real embedded Postgres.

Applying twice is a no-op, two runners at once apply each migration exactly once (the advisory
lock), a changed migration file is refused, and a service started against a database that
lacks migrations stops with one clear line.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace

import asyncpg
import pytest
import pytest_asyncio

from deploy.embedded.ports import free_port
from deploy.embedded.stack import EmbeddedStack
from shared.adapters.pg import migrations
from shared.adapters.pg.migrations import apply_migrations, ensure_schema_current, load_migrations
from shared.core.errors import ConfigError

ALL_VERSIONS = [m.version for m in load_migrations()]


@pytest_asyncio.fixture
async def empty_database_url(stack: EmbeddedStack) -> AsyncIterator[str]:
    """A database with no schema at all (dropped after the test)."""
    name = f"empty_{uuid.uuid4().hex}"
    admin = await asyncpg.connect(stack.postgres.dsn_for("postgres"))
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield stack.postgres.dsn_for(name)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def _postwire(*args: str, dsn: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSTWIRE_")}
    if dsn is not None:
        env["POSTWIRE_DATABASE_URL"] = dsn
    return subprocess.run([sys.executable, "-m", "cli.main", *args], env=env,
                          capture_output=True, text=True, timeout=120, check=False)


async def test_migrate_applies_everything_once_then_nothing(empty_database_url: str) -> None:
    first = await asyncio.to_thread(_postwire, "migrate", dsn=empty_database_url)
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == (f"applied {len(ALL_VERSIONS)} migration(s): "
                                    + ", ".join(ALL_VERSIONS))
    second = await asyncio.to_thread(_postwire, "migrate", dsn=empty_database_url)
    assert second.returncode == 0, second.stderr
    assert "up to date" in second.stdout
    conn = await asyncpg.connect(empty_database_url)
    try:
        rows = await conn.fetch("SELECT version FROM schema_migrations ORDER BY version")
        assert [r["version"] for r in rows] == ALL_VERSIONS
        await ensure_schema_current(conn)  # does not raise
    finally:
        await conn.close()


async def test_two_concurrent_runners_apply_each_migration_once(empty_database_url: str) -> None:
    results = await asyncio.gather(*(apply_migrations(empty_database_url) for _ in range(3)))
    applied = [version for result in results for version in result]
    assert sorted(applied) == ALL_VERSIONS  # each exactly once, whoever got the lock first
    conn = await asyncpg.connect(empty_database_url)
    try:
        assert await conn.fetchval("SELECT count(*) FROM schema_migrations") == len(ALL_VERSIONS)
    finally:
        await conn.close()


async def test_migrate_without_a_database_url_exits_2_with_one_line() -> None:
    result = await asyncio.to_thread(_postwire, "migrate", dsn=None)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert "POSTWIRE_DATABASE_URL" in result.stderr


async def test_a_changed_migration_is_refused(empty_database_url: str,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    await apply_migrations(empty_database_url)
    shipped = load_migrations()
    edited = [replace(shipped[0], sql=shipped[0].sql + "\n-- edited\n"), *shipped[1:]]
    monkeypatch.setattr(migrations, "load_migrations", lambda: edited)
    with pytest.raises(ConfigError, match=f"{shipped[0].version} was changed"):
        await apply_migrations(empty_database_url)


async def test_services_refuse_an_out_of_date_schema(empty_database_url: str,
                                                     kafka_bootstrap: str) -> None:
    conn = await asyncpg.connect(empty_database_url)
    try:
        with pytest.raises(ConfigError, match="out of date"):
            await ensure_schema_current(conn)
    finally:
        await conn.close()
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"),
           "POSTWIRE_DATABASE_URL": empty_database_url,
           "POSTWIRE_KAFKA_BOOTSTRAP": kafka_bootstrap, "POSTWIRE_API_KEYS": "key-of-ingest-1",
           "POSTWIRE_ADMIN_TOKENS": "ops:token-of-admin-1",
           "POSTWIRE_INGEST_PORT": str(free_port()),
           "POSTWIRE_DISPATCHER_PORT": str(free_port()), "POSTWIRE_ADMIN_PORT": str(free_port())}
    for service in ("ingest", "dispatcher", "dlq_replay"):
        result = await asyncio.to_thread(
            subprocess.run, [sys.executable, "-m", f"services.{service}"], env=env,
            capture_output=True, text=True, timeout=60, check=False)
        lines = result.stderr.strip().splitlines()
        assert result.returncode != 0, service
        assert len(lines) == 1, (service, lines)
        assert "out of date" in lines[0] and "postwire migrate" in lines[0], (service, lines)
