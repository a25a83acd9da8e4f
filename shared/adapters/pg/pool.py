"""The asyncpg pool every service uses, and the translation of connection failures."""

from __future__ import annotations

import asyncio

import asyncpg
import orjson

from shared.adapters.pg.migrations import ensure_schema_current
from shared.core.errors import ConfigError


async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec(
        "jsonb", encoder=lambda v: orjson.dumps(v).decode(), decoder=orjson.loads,
        schema="pg_catalog",
    )
    await conn.execute("SET TIME ZONE 'UTC'")


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Release hook of the pool: leaves the session as it is, but proves the connection idle.

    asyncpg's default resets every released connection with
    ``pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL``. Pooled connections never
    take advisory locks, LISTEN, hold cursors or SET anything after ``_init_connection`` (the
    migration runner and the endpoint-cache listener use connections of their own), so there
    is nothing to reset; and ``RESET ALL`` used to undo the UTC time zone set at connect.
    asyncpg still rolls back a transaction left open before this hook runs.

    The hook still sends one trivial query. A connection released while an operation was still
    in progress on it (seen after Postgres was killed under load: a query interrupted
    mid-flight) fails it with "another operation is in progress", and asyncpg then terminates
    the connection instead of pooling it. A no-op hook pooled such connections: every later
    transaction on them failed the same way, and a dispatcher's claims and outcomes stalled for
    good (the chaos soak, ``bench/chaos.py``).
    """
    await conn.execute("SELECT 1")


async def create_pool(dsn: str, *, min_size: int = 2, max_size: int = 10,
                      connect_timeout_s: float = 10.0) -> asyncpg.Pool:
    """Open a pool and check the schema is current.

    Raises ConfigError with one clear line when Postgres cannot be reached within
    ``connect_timeout_s`` or the schema is out of date.
    """
    try:
        pool: asyncpg.Pool = await asyncio.wait_for(
            asyncpg.create_pool(dsn, min_size=min_size, max_size=max_size,
                                init=_init_connection, reset=_keep_session,
                                command_timeout=60),
            timeout=connect_timeout_s,
        )
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, ValueError,
            TimeoutError) as exc:  # InterfaceError/ValueError: a bad sslrootcert= and the like
        raise ConfigError(f"POSTWIRE_DATABASE_URL: cannot connect to Postgres ({exc})") from exc
    async with pool.acquire() as conn:
        await ensure_schema_current(conn)
    return pool


async def ping(pool: asyncpg.Pool, timeout_s: float = 2.0) -> str | None:
    """None when Postgres answers ``SELECT 1`` within ``timeout_s``; otherwise the reason."""
    try:
        async with asyncio.timeout(timeout_s):
            async with pool.acquire() as conn:
                await conn.fetchval("SELECT 1")
        return None
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
        return f"postgres: {type(exc).__name__}: {exc}"


