"""Per-process cache of each account's routable endpoints, for event fan-out.

Freshness: every endpoint change sends ``NOTIFY postwire_endpoints, '<account_id>'`` in its
transaction (:mod:`shared.adapters.pg.notify`). The cache holds one connection that LISTENs on
that channel and drops the named account when a notification arrives; local changes also call
:meth:`EndpointCache.invalidate` right after commit. Entries expire after ``ttl_s`` as a safety
net. While the listening connection is down nothing is cached (every lookup reads Postgres) and
the cache is cleared, so a missed notification can never leave a stale entry; the connection is
re-opened in the background. A lookup that overlaps an invalidation of the same account is
answered but not stored, so a read started before a change never outlives it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

import asyncpg
from aiohttp import web

from services.ingest.metrics import IngestMetrics
from shared.adapters.pg.notify import ENDPOINTS_CHANNEL
from shared.endpoints.store import load_routes
from shared.tasks import cancel_and_wait, wait_event

log = logging.getLogger(__name__)

APPLICATION_NAME = "postwire-endpoint-cache"
"""``application_name`` of the dedicated listening connection (visible in pg_stat_activity)."""
_DB_ERRORS = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError)


@dataclass(frozen=True)
class EndpointRoute:
    """An enabled, live endpoint and the event type patterns it subscribes to."""

    id: str
    event_types: tuple[str, ...]


@dataclass(frozen=True)
class _Entry:
    routes: tuple[EndpointRoute, ...]
    expires_at: float


class EndpointCache:
    """Answers "which endpoints of this account may receive events" without a query per event.

    ``dsn`` opens a dedicated listening connection; without it one connection of ``pool`` is
    held for listening. Methods must be called from the event loop that runs :meth:`start`.
    """

    def __init__(self, pool: asyncpg.Pool, metrics: IngestMetrics, *, dsn: str | None = None,
                 ttl_s: float = 5.0, max_entries: int = 100_000, ping_interval_s: float = 5.0,
                 reconnect_delay_s: float = 1.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._pool = pool
        self._metrics = metrics
        self._dsn = dsn
        self._ttl_s = ttl_s
        self._max_entries = max_entries
        self._ping_interval_s = ping_interval_s
        self._reconnect_delay_s = reconnect_delay_s
        self._clock = clock
        self._entries: dict[str, _Entry] = {}
        self._loading: dict[str, int] = {}      # account -> lookups in flight
        self._dirty: set[str] = set()           # invalidated while a lookup was in flight
        self._epoch = 0                         # bumped whenever listening starts or stops
        self._listening = False
        self._ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def listening(self) -> bool:
        """True while notifications are being received (and entries may be cached)."""
        return self._listening

    async def start(self, ready_timeout_s: float = 5.0) -> None:
        """Start listening in the background; waits up to ``ready_timeout_s`` for the first
        connection. Never raises for an unreachable database: lookups then bypass the cache
        until the listener connects."""
        self._task = asyncio.create_task(self._run(), name="endpoint-cache-listener")
        await wait_event(self._ready, ready_timeout_s)

    async def stop(self) -> None:
        """Stop listening, close the connection and drop every entry."""
        await cancel_and_wait(self._task)
        self._task = None
        self.clear()

    def invalidate(self, account_id: str) -> None:
        """Forget ``account_id``; the next lookup reads Postgres. Never blocks."""
        self._entries.pop(account_id, None)
        if account_id in self._loading:
            self._dirty.add(account_id)

    def clear(self) -> None:
        """Forget every account."""
        self._entries.clear()
        self._dirty.update(self._loading)

    async def routes_for(self, account_id: str) -> Sequence[EndpointRoute]:
        """The enabled, live endpoints of ``account_id`` in creation order (may be empty).

        Raises asyncpg/OSError errors when Postgres must be read and cannot be.
        """
        return (await self.routes_for_many((account_id,)))[account_id]

    async def routes_for_many(
            self, account_ids: Collection[str]) -> dict[str, Sequence[EndpointRoute]]:
        """:meth:`routes_for` of every account in ``account_ids``; all misses in one query."""
        now = self._clock()
        result: dict[str, Sequence[EndpointRoute]] = {}
        misses: list[str] = []
        for account_id in dict.fromkeys(account_ids):
            entry = self._entries.get(account_id)
            if entry is not None and entry.expires_at > now:
                result[account_id] = entry.routes
            else:
                misses.append(account_id)
        if result:
            self._metrics.endpoint_cache_hits.inc(len(result))
        if misses:
            self._metrics.endpoint_cache_misses.inc(len(misses))
            result.update(await self._load(misses))
        return result

    async def _load(self, account_ids: list[str]) -> dict[str, tuple[EndpointRoute, ...]]:
        epoch, cacheable = self._epoch, self._listening
        for account_id in account_ids:
            self._loading[account_id] = self._loading.get(account_id, 0) + 1
        try:
            async with self._pool.acquire() as conn:
                rows = await load_routes(conn, account_ids)
            loaded = {account: tuple(EndpointRoute(ep_id, tuple(types)) for ep_id, types in eps)
                      for account, eps in rows.items()}
            if cacheable and self._listening and epoch == self._epoch:
                self._store(loaded)
            return loaded
        finally:
            for account_id in account_ids:
                self._finish_loading(account_id)

    def _finish_loading(self, account_id: str) -> None:
        remaining = self._loading[account_id] - 1
        if remaining:
            self._loading[account_id] = remaining
        else:
            del self._loading[account_id]
            self._dirty.discard(account_id)

    def _store(self, loaded: dict[str, tuple[EndpointRoute, ...]]) -> None:
        expires_at = self._clock() + self._ttl_s
        for account_id, routes in loaded.items():
            if account_id in self._dirty:
                continue
            self._entries.pop(account_id, None)  # re-insert at the end: oldest first
            self._entries[account_id] = _Entry(routes, expires_at)
        if len(self._entries) > self._max_entries:
            self._evict()

    def _evict(self) -> None:
        now = self._clock()
        for account_id in [a for a, e in self._entries.items() if e.expires_at <= now]:
            del self._entries[account_id]
        excess = len(self._entries) - self._max_entries * 9 // 10
        for account_id in list(self._entries)[:max(excess, 0)]:
            del self._entries[account_id]

    def _on_notify(self, _conn: object, _pid: int, _channel: str, payload: object) -> None:
        self.invalidate(str(payload))

    async def _run(self) -> None:
        while True:
            try:
                conn = await self._connect()
            except _DB_ERRORS as exc:
                log.warning("endpoint cache: cannot open listener connection: %s", exc)
            else:
                try:
                    await self._listen(conn)
                except Exception:
                    log.exception("endpoint cache: listener failed; reconnecting")
                finally:
                    self._set_listening(False)
                    await self._close(conn)
            await asyncio.sleep(self._reconnect_delay_s)

    async def _listen(self, conn: asyncpg.Connection) -> None:
        """Listen on ``conn`` until it is lost or stops answering pings."""
        lost = asyncio.Event()
        conn.add_termination_listener(lambda _conn: lost.set())
        try:
            await conn.add_listener(ENDPOINTS_CHANNEL, self._on_notify)
            self._set_listening(True)
            self._ready.set()
            while not lost.is_set():
                await wait_event(lost, self._ping_interval_s)
                if not lost.is_set():
                    await conn.fetchval("SELECT 1", timeout=self._ping_interval_s)
        except _DB_ERRORS as exc:
            log.warning("endpoint cache: listener connection lost: %s", exc)
        else:
            log.warning("endpoint cache: listener connection closed")

    def _set_listening(self, listening: bool) -> None:
        self._listening = listening
        self._epoch += 1
        self.clear()

    async def _connect(self) -> asyncpg.Connection:
        if self._dsn is not None:
            conn: asyncpg.Connection = await asyncpg.connect(
                self._dsn, timeout=10, server_settings={"application_name": APPLICATION_NAME})
            return conn
        pooled: asyncpg.Connection = await self._pool.acquire(timeout=10)
        return pooled

    async def _close(self, conn: asyncpg.Connection) -> None:
        """Give the connection back (pool) or close it; never blocks more than a few seconds."""
        if self._dsn is None:
            with contextlib.suppress(*_DB_ERRORS):
                if not conn.is_closed():
                    await conn.remove_listener(ENDPOINTS_CHANNEL, self._on_notify)
            with contextlib.suppress(*_DB_ERRORS):
                await self._pool.release(conn, timeout=2)  # terminates it itself on timeout
            return
        try:
            await conn.close(timeout=2)
        except _DB_ERRORS:
            conn.terminate()
        except asyncio.CancelledError:
            conn.terminate()
            raise

ENDPOINT_CACHE: web.AppKey[EndpointCache] = web.AppKey("endpoint_cache", EndpointCache)
