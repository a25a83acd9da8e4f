"""The benchmark's webhook receiver: a lean HTTP/1.1 server (uvloop) in its own process.

It stands in for a merchant, so it is written to cost as little CPU as possible: the machine's
two cores should go to Postwire, not to its simulated customers. It is a plain
``asyncio.Protocol`` (keep-alive, ``Content-Length`` bodies, pipelining), not an aiohttp
application: on this machine aiohttp's server spent about 0.1 ms of CPU per webhook, which at
2,000 deliveries/s is a tenth of the machine.

It listens on 127.0.0.1, port 0 (the kernel picks; the port is sent back through a pipe),
answers every ``POST /hook/{name}`` with 204 once the body has arrived, and records the arrival
time (``time.time()``, the machine's wall clock, comparable with the load generator's) of the
first request per ``(name, webhook-id)``. Repeats are counted as duplicates. A request it cannot
parse (a chunked body, a malformed head or length, a head over 64 KiB) gets 400 and the
connection is closed; an unknown route gets 404.

Control routes, used by the parent between phases:

- ``GET /_stats`` -> ``{"received": requests so far, "distinct": keys held, "duplicates": n}``
- ``POST /_take`` -> ``{"<name> <webhook-id>": arrival, ...}``: every key recorded since the
  last take, which are then forgotten (the request counters keep counting).

Running it in its own process keeps it off the load generator's and the parent's event loops.
The parent drives it through :class:`ReceiverProcess` and stops it by PID.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import socket
import time
import urllib.request
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

import orjson
import uvloop

_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))
MAX_HEAD_BYTES = 64 * 1024
_HOOK_PREFIX = "/hook/"
_NO_CONTENT = b"HTTP/1.1 204 No Content\r\n\r\n"


class BadRequest(Exception):
    """The bytes received are not an HTTP/1.x request this server accepts."""


@dataclass(frozen=True)
class Request:
    """One parsed request; header names are lower-case."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    keep_alive: bool


class RequestParser:
    """Incremental HTTP/1.x request parser for one connection (pure; no I/O).

    :meth:`feed` takes bytes as they arrive and returns every request completed by them, in
    order (pipelined requests included); a partial request stays buffered. Bodies are framed by
    ``Content-Length`` only (absent means empty); raises :class:`BadRequest` otherwise.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self._head: tuple[str, str, dict[str, str], int, bool] | None = None
        self._head_end = 0

    def feed(self, data: bytes) -> list[Request]:
        self._buf += data
        done: list[Request] = []
        while True:
            if self._head is None and not self._parse_head():
                return done
            assert self._head is not None
            method, path, headers, length, keep_alive = self._head
            total = self._head_end + length
            if len(self._buf) < total:
                return done
            body = bytes(self._buf[self._head_end:total])
            del self._buf[:total]
            self._head = None
            done.append(Request(method, path, headers, body, keep_alive))

    def _parse_head(self) -> bool:
        end = self._buf.find(b"\r\n\r\n")
        if end < 0:
            if len(self._buf) > MAX_HEAD_BYTES:
                raise BadRequest("request head over 64 KiB")
            return False
        lines = bytes(self._buf[:end]).decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or parts[2] not in ("HTTP/1.1", "HTTP/1.0"):
            raise BadRequest(f"bad request line {lines[0][:80]!r}")
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep or not name or name != name.strip():
                raise BadRequest(f"bad header line {line[:80]!r}")
            headers[name.lower()] = value.strip()
        if "transfer-encoding" in headers:
            raise BadRequest("only Content-Length bodies are accepted")
        raw_length = headers.get("content-length", "0")
        if not raw_length.isdigit():
            raise BadRequest(f"bad Content-Length {raw_length[:20]!r}")
        connection = headers.get("connection", "").lower()
        keep_alive = connection != "close" if parts[2] == "HTTP/1.1" else connection == "keep-alive"
        self._head = (parts[0], parts[1], headers, int(raw_length), keep_alive)
        self._head_end = end + 4
        return True


def _json_response(value: Any) -> bytes:
    body = orjson.dumps(value)
    return (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
            + str(len(body)).encode() + b"\r\n\r\n" + body)


def _plain_response(status: str) -> bytes:
    return f"HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n".encode()


class _State:
    """What the receiver has seen; single event loop."""

    def __init__(self) -> None:
        self.receipts: dict[str, float] = {}
        self.received = 0
        self.duplicates = 0

    def respond(self, request: Request, now: float) -> bytes:
        """The response bytes for ``request``, which arrived at ``now``."""
        if request.method == "POST" and request.path.startswith(_HOOK_PREFIX):
            key = f"{request.path[len(_HOOK_PREFIX):]} {request.headers.get('webhook-id', '')}"
            self.received += 1
            if key in self.receipts:
                self.duplicates += 1
            else:
                self.receipts[key] = now
            return _NO_CONTENT
        if request.method == "GET" and request.path == "/_stats":
            return _json_response({"received": self.received, "distinct": len(self.receipts),
                                   "duplicates": self.duplicates})
        if request.method == "POST" and request.path == "/_take":
            taken, self.receipts = self.receipts, {}
            return _json_response(taken)
        return _plain_response("404 Not Found")


class _Connection(asyncio.Protocol):
    def __init__(self, state: _State) -> None:
        self._state = state
        self._parser = RequestParser()
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        transport = self._transport
        assert transport is not None
        now = time.time()
        try:
            requests = self._parser.feed(data)
        except BadRequest:
            transport.write(_plain_response("400 Bad Request"))
            transport.close()
            return
        if not requests:
            return
        transport.write(b"".join(self._state.respond(r, now) for r in requests))
        if not requests[-1].keep_alive:
            transport.close()


async def _serve(out: Connection) -> None:
    state = _State()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    server = await asyncio.get_running_loop().create_server(lambda: _Connection(state),
                                                            sock=sock)
    out.send(sock.getsockname()[1])
    async with server:
        await asyncio.Event().wait()  # until the parent terminates the process


def _main(out: Connection) -> None:
    """Process entry point. Ctrl-C is left to the parent, which stops this process by PID."""
    from bench._common import child_setup

    child_setup()
    uvloop.run(_serve(out))


class ReceiverProcess:
    """Starts, queries and stops the receiver process. Methods block; parent side only."""

    def __init__(self) -> None:
        self._proc: Any = None
        self.port = 0

    @property
    def pid(self) -> int:
        return int(self._proc.pid) if self._proc is not None else 0

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/hook/{name}"

    def start(self, timeout_s: float = 30.0) -> None:
        """Spawn the process and wait for its port; RuntimeError if it does not come up."""
        ctx = multiprocessing.get_context("spawn")
        parent_end, child_end = ctx.Pipe(duplex=False)
        self._proc = ctx.Process(target=_main, args=(child_end,), name="bench-receiver",
                                 daemon=True)
        self._proc.start()
        child_end.close()
        if not parent_end.poll(timeout_s):
            self.stop()
            raise RuntimeError("receiver process did not report its port")
        self.port = int(parent_end.recv())

    def _call(self, method: str, path: str) -> Any:
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", method=method,
                                         data=b"" if method == "POST" else None)
        with _NO_PROXY.open(request, timeout=30) as response:
            return orjson.loads(response.read())

    def stats(self) -> dict[str, int]:
        """Counters: ``received`` (requests), ``distinct`` (held keys), ``duplicates``."""
        result: dict[str, int] = self._call("GET", "/_stats")
        return result

    def take(self) -> dict[str, float]:
        """Every ``"<name> <webhook-id>" -> arrival`` recorded since the last take."""
        result: dict[str, float] = self._call("POST", "/_take")
        return result

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 5 s. Idempotent."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.is_alive():
            proc.terminate()
            proc.join(5)
        if proc.is_alive():
            proc.kill()
            proc.join(5)
