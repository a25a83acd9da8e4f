"""A real webhook receiver for tests: an aiohttp server on 127.0.0.1, port 0.

It records every request (path, headers, body, arrival and completion times, concurrency at
arrival) and answers as programmed per path: a sequence of :class:`Reply` values consumed one
per request, then a default. A reply can delay or hang, carry headers (Retry-After,
Location), or stream a huge body (``body_bytes``) that the client is expected not to read.

Runs inside the test's event loop::

    async with Receiver() as rx:
        rx.program("/a", [Reply(500), Reply(200)])
        url = rx.url("/a")
        await rx.wait_for(lambda: len(rx.requests_for("/a")) >= 2, timeout_s=10)
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import orjson
from aiohttp import web

_CHUNK = 64 * 1024


@dataclass(frozen=True)
class Reply:
    """One programmed answer. ``delay_s`` before answering (use a large one to hang)."""

    status: int = 200
    delay_s: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b"ok"
    body_bytes: int | None = None     # stream this many bytes instead of ``body``


@dataclass
class Received:
    """One recorded request."""

    path: str
    headers: dict[str, str]
    body: bytes
    at: float                 # time.monotonic() at arrival
    wall: float               # time.time() at arrival
    concurrent: int           # requests to this path in progress at arrival, this one included
    status: int = 0
    done_at: float | None = None
    bytes_sent: int = 0

    @property
    def webhook_id(self) -> str:
        return self.headers.get("webhook-id", "")

    def json(self) -> Any:
        return orjson.loads(self.body)


class Receiver:
    """See the module docstring. Not thread-safe; use from the loop that started it."""

    def __init__(self) -> None:
        self.requests: list[Received] = []
        self._programs: dict[str, deque[Reply]] = defaultdict(deque)
        self._defaults: dict[str, Reply] = {}
        self._responders: dict[str, Callable[[Received], Reply | None]] = {}
        self._active: dict[str, int] = defaultdict(int)
        self.max_concurrent: dict[str, int] = defaultdict(int)
        self._runner: web.AppRunner | None = None
        self._changed = asyncio.Event()
        self.port = 0

    async def __aenter__(self) -> Receiver:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.stop()

    async def start(self) -> Receiver:
        """Listen on a free loopback port (``port``); returns the receiver itself."""
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def program(self, path: str, replies: Iterable[Reply], default: Reply | None = None) -> None:
        """Answer ``path`` with ``replies`` in order, then ``default`` (200 when None)."""
        self._programs[path].extend(replies)
        if default is not None:
            self._defaults[path] = default

    def respond_with(self, path: str, responder: Callable[[Received], Reply | None]) -> None:
        """Answer ``path`` with ``responder(request)``; None falls back to the program."""
        self._responders[path] = responder

    def requests_for(self, path: str) -> list[Received]:
        return [r for r in self.requests if r.path == path]

    def ids(self) -> list[str]:
        """The ``webhook-id`` of every request, in arrival order."""
        return [r.webhook_id for r in self.requests]

    async def wait_for_count(self, count: int, timeout_s: float = 30.0) -> list[Received]:
        """Wait until at least ``count`` requests arrived (any path); returns them all, in
        arrival order. Raises TimeoutError after ``timeout_s``."""
        await self.wait_for(lambda: len(self.requests) >= count, timeout_s)
        return list(self.requests)

    async def wait_for(self, predicate: Callable[[], bool], timeout_s: float) -> None:
        """Return once ``predicate()`` holds; raises TimeoutError after ``timeout_s``."""
        async with asyncio.timeout(timeout_s):
            while not predicate():
                self._changed.clear()
                await self._changed.wait()

    def _next_reply(self, path: str, record: Received) -> Reply:
        responder = self._responders.get(path)
        reply = responder(record) if responder is not None else None
        if reply is not None:
            return reply
        queue = self._programs.get(path)
        if queue:
            return queue.popleft()
        return self._defaults.get(path, Reply())

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        self._active[path] += 1
        self.max_concurrent[path] = max(self.max_concurrent[path], self._active[path])
        record = Received(path, {k.lower(): v for k, v in request.headers.items()},
                          await request.read(), time.monotonic(), time.time(),
                          self._active[path])
        self.requests.append(record)
        self._changed.set()
        reply = self._next_reply(path, record)
        record.status = reply.status
        try:
            if reply.delay_s:
                await asyncio.sleep(reply.delay_s)
            if reply.body_bytes is None:
                return web.Response(status=reply.status, body=reply.body, headers=reply.headers)
            return await self._stream(request, reply, record)
        finally:
            self._active[path] -= 1
            record.done_at = time.monotonic()
            self._changed.set()

    async def _stream(self, request: web.Request, reply: Reply,
                      record: Received) -> web.StreamResponse:
        assert reply.body_bytes is not None
        response = web.StreamResponse(status=reply.status, headers=reply.headers)
        response.content_length = reply.body_bytes
        await response.prepare(request)
        chunk = b"x" * _CHUNK
        try:
            while record.bytes_sent < reply.body_bytes:
                part = chunk[: reply.body_bytes - record.bytes_sent]
                await response.write(part)
                record.bytes_sent += len(part)
        except (ConnectionError, RuntimeError):
            pass  # the client hung up, as it should after 64 KiB
        return response
