"""Raw-socket HTTP/1.1 for hardening tests: send exact bytes, read exactly what comes back.

aiohttp's client refuses to send malformed requests, so parser, slow-client and fuzzing tests
speak HTTP over plain asyncio streams to 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import orjson


@dataclass
class RawResponse:
    """A parsed response; ``headers`` keys are lower-case (last value wins)."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    def json(self) -> object:
        return orjson.loads(self.body)


def parse_response(data: bytes) -> RawResponse:
    """Parse one response from ``data`` (status line, headers, body by Content-Length)."""
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", len(rest)))
    return RawResponse(status, headers, rest[:length])


async def read_response(reader: asyncio.StreamReader, timeout_s: float = 10.0) -> RawResponse:
    """Read one response (headers, then Content-Length bytes) from ``reader``."""
    async with asyncio.timeout(timeout_s):
        head = await reader.readuntil(b"\r\n\r\n")
        partial = parse_response(head)
        length = int(partial.headers.get("content-length", "0"))
        body = await reader.readexactly(length) if length else b""
    return RawResponse(partial.status, partial.headers, body)


async def exchange(port: int, raw: bytes, timeout_s: float = 10.0) -> RawResponse:
    """Send ``raw`` on a new connection to 127.0.0.1:``port`` and read one response."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(raw)
        await writer.drain()
        return await read_response(reader, timeout_s)
    finally:
        writer.close()


def request(method: str, path: str, headers: list[tuple[bytes, bytes]] | None = None,
            body: bytes = b"", content_length: bool = True) -> bytes:
    """A request's bytes; header names and values are sent exactly as given."""
    lines = [f"{method} {path} HTTP/1.1".encode(), b"Host: 127.0.0.1"]
    for name, value in headers or []:
        lines.append(name + b": " + value)
    if content_length and body:
        lines.append(f"Content-Length: {len(body)}".encode())
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


async def closed_within(reader: asyncio.StreamReader, timeout_s: float) -> float | None:
    """Seconds until the server closed the connection (EOF or reset), or None if it stayed
    open for ``timeout_s``; any bytes the server sends first are read and ignored."""
    start = time.monotonic()
    try:
        async with asyncio.timeout(timeout_s):
            while await reader.read(65536):
                pass
    except TimeoutError:
        return None
    except ConnectionError:
        pass
    return time.monotonic() - start


def exchange_sync(port: int, raw: bytes, timeout_s: float = 10.0) -> RawResponse:
    """Blocking :func:`exchange` (for Hypothesis tests): send ``raw``, read one response."""
    import contextlib
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as sock:
        # the server may answer and close before reading everything we send
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(raw)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"connection closed before a response: {data[:200]!r}")
            data += chunk
        head = parse_response(data.partition(b"\r\n\r\n")[0] + b"\r\n\r\n")
        length = int(head.headers.get("content-length", "0"))
        while len(data.partition(b"\r\n\r\n")[2]) < length:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    return parse_response(data)
