"""The asyncpg pool every service uses, and the translation of connection failures."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import orjson

from shared.adapters.pg.migrations import ensure_schema_current
from shared.core.errors import ConfigError
from shared.tasks import within


async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec(
        "jsonb", encoder=lambda v: orjson.dumps(v).decode(), decoder=orjson.loads,
        schema="pg_catalog",
    )
    await conn.execute("SET TIME ZONE 'UTC'")


async def _init_generic_plans(conn: asyncpg.Connection) -> None:
    await _init_connection(conn)
    await conn.execute("SET plan_cache_mode = force_generic_plan")


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

    That probe is one round trip and one (read-only) transaction per pool use. A connection
    given back by :func:`acquire_settled` after a body that ended normally is known to be
    idle (every operation on it was awaited to its end, i.e. to Postgres's ReadyForQuery), so
    the probe is skipped for it; every other release, and that one after an exception, still
    sends it.
    """
    if conn.get_server_pid() in _SETTLED:
        return
    await conn.execute("SELECT 1")


# backend pids of connections being released by acquire_settled after a normal end
_SETTLED: set[int] = set()


@asynccontextmanager
async def acquire_settled(pool: asyncpg.Pool) -> AsyncIterator[asyncpg.Connection]:
    """``pool.acquire()`` for hot paths: when the body ends without an exception, the release
    skips the hook's probe (``_keep_session``), saving a round trip and a transaction per use.

    Contract: the body awaits every operation it starts on the connection and does not catch
    an exception of one and carry on (an interrupted operation may leave the connection busy:
    then the body must end by raising, and the release probes as usual). A transaction the
    body left open is still rolled back by the pool.
    """
    conn: asyncpg.Connection = await pool.acquire()
    try:
        yield conn
    except BaseException:
        await pool.release(conn)
        raise
    pid = conn.get_server_pid()
    _SETTLED.add(pid)
    try:
        await pool.release(conn)
    finally:
        _SETTLED.discard(pid)


async def create_pool(dsn: str, *, min_size: int = 2, max_size: int = 10,
                      connect_timeout_s: float = 10.0, generic_plans: bool = False,
                      application_name: str | None = None) -> asyncpg.Pool:
    """Open a pool and check the schema is current.

    ``application_name``: what ``pg_stat_activity`` shows for the pool's sessions (e.g.
    ``postwire-dispatcher``), so an operator can tell whose backend is busy or waiting.

    ``generic_plans``: the pool's sessions run ``plan_cache_mode = force_generic_plan``, so each
    prepared statement is planned once per connection instead of on every execution (Postgres
    otherwise keeps custom plans for statements over the day partitions, and planning such a
    statement can cost more than running it). Only for a pool whose statements bound their
    ids by scalar parameters where partition pruning matters (pruned when the executor starts);
    the dispatcher's outcome writer has one.

    Raises ConfigError with one clear line when Postgres cannot be reached within
    ``connect_timeout_s`` or the schema is out of date.
    """
    try:
        pool: asyncpg.Pool = await within(
            asyncpg.create_pool(dsn, min_size=min_size, max_size=max_size,
                                init=_init_generic_plans if generic_plans
                                else _init_connection, reset=_keep_session,
                                command_timeout=60,
                                server_settings=({"application_name": application_name}
                                                 if application_name else None)),
            connect_timeout_s,
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


