"""The connection layer under every service's aiohttp app: timeouts, a connection limit, and
protocol errors answered in the contract's format.

aiohttp's own request handler answers a request its parser refuses (a header line over 8190
bytes, more than 128 headers, a 1 MB request line, Content-Length with Transfer-Encoding, a
NUL byte) with a text/plain 400 that echoes part of the offending input, and logs a full
traceback of it (credentials included, when the bad line was ``Authorization``). Here:

- Such a request is answered ``400 {"error": {"type": "invalid_request", ...}}`` with a
  message naming the kind of fault only, never the input; ``Connection: close``.
- It is counted in ``http_protocol_errors_total{reason}`` and logged as one short line without
  the input, at most one line per :data:`LOG_INTERVAL_S` per process (the line says how many
  more were suppressed), so an unauthenticated client cannot grow the log.
- A connection is closed when it stays idle (no request in progress) for ``idle_timeout_s``,
  or when a request's line and headers are not complete ``header_timeout_s`` after their
  first byte (slowloris). Body deadlines are :mod:`shared.http.limits`' business.
- At most ``max_connections`` connections are open: a new one over the limit evicts the
  connection that has been idle longest, or is refused with 503 when none is idle.

This relies on aiohttp's ``RequestHandler`` internals (pinned to aiohttp < 3.15); the
hardening tests run real processes against raw sockets, so a change there fails loudly.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, cast

import orjson
from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage, BadHttpMethod, LineTooLong
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from shared.config_http import HttpServerSettings

log = logging.getLogger("postwire.http")

LOG_INTERVAL_S = 10.0
REFUSAL_GRACE_S = 0.25
"""How long a connection refused over the limit stays open for its 503 to be read."""
ProtocolErrorHook = Callable[[str], None]
"""Called with a short reason (``line_too_long``, ``bad_request``, ...) per refused request."""

_CLOSE = b"Connection: close\r\n"


def _error_bytes(status: int, reason: str, error_type: str, message: str) -> bytes:
    body = orjson.dumps({"error": {"type": error_type, "message": message, "param": None}})
    return (f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nCache-Control: no-store\r\n").encode() + _CLOSE + \
        b"\r\n" + body


_OVER_CAPACITY = _error_bytes(503, "Service Unavailable", "unavailable",
                              "too many open connections; retry later")


def classify_protocol_error(exc: BaseException | None, status: int) -> tuple[str, str]:
    """``(reason label, client message)`` for an error aiohttp's request handler caught.

    The message never contains the offending input."""
    if isinstance(exc, LineTooLong):
        return "line_too_long", "a request line or header line is too long"
    if isinstance(exc, BadHttpMethod):
        return "bad_method", "the request line is not valid HTTP"
    if isinstance(exc, BadHttpMessage):
        text = exc.message if isinstance(exc.message, str) else ""
        if text.startswith("Too many headers"):
            return "too_many_headers", "the request has too many header fields"
        return "bad_request", "the request is not valid HTTP/1.1 (request line, header or framing)"
    if status == 504:
        return "handler_timeout", "the request took too long; retry later"
    return "internal", "internal error; retry later"


class _RateLimitedLog:
    """At most one warning per ``interval_s``; the next line counts the ones suppressed."""

    def __init__(self, interval_s: float = LOG_INTERVAL_S) -> None:
        self.interval_s = interval_s
        self._last = float("-inf")
        self._suppressed = 0

    def warning(self, message: str, **fields: Any) -> None:
        now = time.monotonic()
        if now - self._last < self.interval_s:
            self._suppressed += 1
            return
        self._last = now
        extra = {"pw": {**fields, "suppressed_since_last": self._suppressed}}
        self._suppressed = 0
        log.warning(message, extra=extra)


class HardenedServer(web.Server):
    """aiohttp's low-level server with :class:`HardenedRequestHandler` connections; tracks
    which connections are idle so an over-limit connection can evict the longest-idle one."""

    def __init__(self, plain: web.Server, limits: HttpServerSettings,
                 on_protocol_error: ProtocolErrorHook, **kwargs: Any) -> None:
        super().__init__(plain.request_handler, request_factory=plain.request_factory,
                         handler_cancellation=plain.handler_cancellation,
                         keepalive_timeout=limits.idle_timeout_s, **kwargs)
        self.limits = limits
        self.on_protocol_error = on_protocol_error
        self.error_log = _RateLimitedLog()
        self.idle: OrderedDict[HardenedRequestHandler, None] = OrderedDict()
        self.open_count = 0

    def __call__(self) -> RequestHandler:
        return HardenedRequestHandler(self, loop=self._loop, **self._kwargs)

    def admit(self, handler: HardenedRequestHandler) -> bool:
        """Make room for ``handler``; False when the limit is reached and nothing is idle."""
        self.open_count += 1
        if self.open_count <= self.limits.max_connections:
            return True
        while self.idle:
            victim, _ = self.idle.popitem(last=False)
            if victim is not handler and not victim.closing:
                victim.force_close()
                self.on_protocol_error("evicted_idle")
                return True
        self.on_protocol_error("over_capacity")
        return False

    def release(self, handler: HardenedRequestHandler) -> None:
        self.open_count -= 1
        self.idle.pop(handler, None)


class HardenedRequestHandler(RequestHandler):
    """One client connection: header deadline, idle tracking, JSON protocol errors."""

    def __init__(self, manager: HardenedServer, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._hardened = manager
        self._head_timer: asyncio.TimerHandle | None = None
        self._admitted = False

    @property
    def closing(self) -> bool:
        """True once the connection is being closed."""
        return bool(self._force_close or self._close)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if not self._hardened.admit(self):
            transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
            self._hardened.release(self)
            self._force_close = True  # whatever the client sends is read and dropped
            transport.write(_OVER_CAPACITY)
            if transport.can_write_eof():
                transport.write_eof()
            # closing at once, with the client's request unread, would reset the connection
            # before the 503 could be read; a short grace lets it arrive
            self._loop.call_later(REFUSAL_GRACE_S, transport.close)
            return
        self._admitted = True
        super().connection_made(transport)
        self._hardened.idle[self] = None

    def connection_lost(self, exc: BaseException | None) -> None:
        self._cancel_head_timer()
        if self._admitted:
            self._admitted = False
            self._hardened.release(self)
            super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._force_close or self._close:
            return
        between_requests = not self._request_in_progress and not self._messages
        if data and between_requests:
            self._hardened.idle.pop(self, None)
            if self._head_timer is None:
                self._head_timer = self._loop.call_later(
                    self._hardened.limits.header_timeout_s, self._head_timed_out)
        super().data_received(data)
        if self._messages:
            self._cancel_head_timer()

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if not self._messages and not self._request_in_progress and not self.closing:
            self._hardened.on_protocol_error("header_timeout")
            self.force_close()

    async def _handle_request(self, request: BaseRequest, start_time: float | None,
                              request_handler: Any) -> tuple[web.StreamResponse, bool]:
        self._hardened.idle.pop(self, None)
        expect = request.headers.get("Expect")
        if expect is not None and expect.strip().lower() != "100-continue":
            # aiohttp would answer a text/plain 417 echoing the header (or fail to encode it)
            request_handler = self._refuse_expect
        try:
            return await super()._handle_request(request, start_time, request_handler)
        finally:
            if not self.closing:
                self._hardened.idle[self] = None

    async def _refuse_expect(self, _: BaseRequest) -> web.StreamResponse:
        self._hardened.on_protocol_error("bad_expect")
        return json_error(400, "invalid_request",
                          "the Expect header is not supported (only 100-continue is)")

    def handle_error(self, request: BaseRequest, status: int = 500,
                     exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        """The contract's JSON error instead of aiohttp's text echo; one short log line."""
        reason, text = classify_protocol_error(exc, status)
        self._hardened.on_protocol_error(reason)
        self._hardened.error_log.warning(
            "request refused by the HTTP layer", reason=reason,
            error_class=type(exc).__name__ if exc is not None else None,
            remote=request.remote)
        if request.writer.output_size > 0:
            raise ConnectionError("response already started; closing the connection")
        if reason in ("internal", "handler_timeout"):
            status, error_type = 503, "unavailable"
        else:
            status, error_type = 400, "invalid_request"
        return json_error(status, error_type, text)


def json_error(status: int, error_type: str, message: str) -> web.Response:
    """A contract error answered below the app: no banner, no caching, connection closed."""
    body = orjson.dumps({"error": {"type": error_type, "message": message, "param": None}})
    response = BareResponse(status=status, body=body, content_type="application/json",
                            headers={"Cache-Control": "no-store", "Connection": "close"})
    response.force_close()
    return response


class BareResponse(web.Response):
    """A response without aiohttp's ``Server`` banner (for replies outside any app route)."""

    async def _prepare_headers(self) -> None:
        await super()._prepare_headers()
        self.headers.popall("Server", None)


class HardenedAppRunner(web.AppRunner):
    """An AppRunner whose server is a :class:`HardenedServer`."""

    def __init__(self, app: web.Application, limits: HttpServerSettings,
                 on_protocol_error: ProtocolErrorHook, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self._limits = limits
        self._on_protocol_error = on_protocol_error

    async def _make_server(self) -> web.Server:
        plain = await super()._make_server()
        kwargs = dict(plain._kwargs)
        kwargs.pop("keepalive_timeout", None)
        return HardenedServer(plain, self._limits, self._on_protocol_error,
                              loop=plain._loop, **kwargs)
