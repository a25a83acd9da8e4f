"""The outbound webhook HTTP client.

One ``aiohttp.ClientSession`` with keep-alive for the whole process. Every request: a total
per-attempt timeout, redirects never followed, no cookies (nothing a receiver sets is sent
back), at most ``max_body_bytes`` of the response read (the connection is dropped rather than
drained when more is sent), no transparent decompression, no proxy from the environment.

SSRF guard at connect time: unless private targets are allowed, every address a host name
resolves to is checked with :func:`shared.core.ssrf.is_forbidden_address` inside the
connector's resolver, i.e. for the very addresses the socket will connect to (a name that
re-binds to a private address after the endpoint was validated is still refused). IP-literal
hosts never reach a resolver, so they are checked before the request, on the host yarl
normalises the URL to (the one aiohttp connects to, not the URL's raw text). Ports in
``denied_ports`` are refused before the request whether or not private targets are allowed.

:meth:`WebhookClient.post` never raises for a delivery problem: it returns an
:class:`HttpOutcome` whose ``failure`` names the class (timeout, connection, dns, tls,
ssrf_blocked, too_large).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from shared.core.retry import FailureKind
from shared.core.ssrf import connect_block_reason, forbidden_reason

MAX_BODY_BYTES = 64 * 1024
_READ_CHUNK = 16 * 1024


class SsrfBlocked(Exception):
    """A target address is not public and private targets are not allowed."""


@dataclass(frozen=True)
class HttpOutcome:
    """What one POST produced.

    Exactly one of ``status_code`` and ``failure`` is set. ``body`` holds at most the first
    ``max_body_bytes`` of the response; ``retry_after`` is the raw ``Retry-After`` header.
    """

    status_code: int | None
    failure: FailureKind | None
    error: str | None
    body: bytes
    retry_after: str | None
    duration_ms: int


class GuardedResolver(AbstractResolver):
    """Resolves with the system resolver, then refuses names with any non-public address."""

    def __init__(self, inner: AbstractResolver | None = None) -> None:
        self._inner = inner if inner is not None else aiohttp.ThreadedResolver()

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        """The resolved addresses; raises SsrfBlocked if any of them is not public."""
        results = await self._inner.resolve(host, port, family)
        for result in results:
            address = ipaddress.ip_address(result["host"].partition("%")[0])
            reason = forbidden_reason(address)
            if reason is not None:
                raise SsrfBlocked(f"host {host} resolves to {address}, a {reason} address")
        return results

    async def close(self) -> None:
        await self._inner.close()


def literal_host_block(url: str, denied_ports: frozenset[int] = frozenset(), *,
                       allow_private: bool = False) -> str | None:
    """Why ``url`` must not be contacted, judged before any connection on the host and port
    aiohttp will really use (yarl's normalised host: full-width digits are folded to ``127.0.0.1``,
    which aiohttp then treats as an IP literal and never resolves); else None. See
    :func:`shared.core.ssrf.connect_block_reason`."""
    return connect_block_reason(url, denied_ports, allow_private=allow_private)


def _cause_chain(exc: BaseException) -> list[BaseException]:
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain:
        chain.append(current)
        current = getattr(current, "os_error", None) or current.__cause__ or current.__context__
    return chain


def classify_exception(exc: BaseException) -> FailureKind:
    """The failure class of an exception raised while sending a request."""
    chain = _cause_chain(exc)
    if any(isinstance(e, SsrfBlocked) for e in chain):
        return FailureKind.SSRF_BLOCKED
    if any(isinstance(e, TimeoutError | asyncio.TimeoutError) for e in chain):
        return FailureKind.TIMEOUT
    if any(isinstance(e, aiohttp.ClientConnectorDNSError | socket.gaierror) for e in chain):
        return FailureKind.DNS
    if any(isinstance(e, ssl.SSLError | aiohttp.ClientSSLError) for e in chain):
        return FailureKind.TLS
    if isinstance(exc, aiohttp.ClientResponseError) and "too" in str(exc.message).lower():
        return FailureKind.TOO_LARGE  # header line or headers over aiohttp's limits
    return FailureKind.CONNECTION


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:500]


class WebhookClient:
    """Sends webhook POSTs. Create in a running loop; ``close`` once at shutdown."""

    def __init__(self, *, timeout_s: float, allow_private: bool, max_connections: int = 0,
                 max_body_bytes: int = MAX_BODY_BYTES,
                 denied_ports: frozenset[int] = frozenset()) -> None:
        self.timeout_s = timeout_s
        self.allow_private = allow_private
        self.denied_ports = denied_ports
        self.max_body_bytes = max_body_bytes
        resolver: AbstractResolver = (aiohttp.ThreadedResolver() if allow_private
                                      else GuardedResolver())
        connector = aiohttp.TCPConnector(
            limit=max_connections, limit_per_host=0, resolver=resolver, ttl_dns_cache=10,
            keepalive_timeout=30, enable_cleanup_closed=True,
        )
        self._session = aiohttp.ClientSession(
            # the per-attempt deadline is the asyncio.timeout in post(), one timer per request
            connector=connector, timeout=aiohttp.ClientTimeout(total=None),
            # no cookies kept: a receiver's Set-Cookie must never ride along on the next
            # webhook to that host (another endpoint, maybe another merchant's); it also
            # saves the jar's filtering on every request
            cookie_jar=aiohttp.DummyCookieJar(),
            auto_decompress=False, trust_env=False, skip_auto_headers=("Accept-Encoding",),
        )

    async def close(self) -> None:
        """Close every pooled connection."""
        await self._session.close()

    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> HttpOutcome:
        """POST ``body`` to ``url``; never raises except CancelledError."""
        start = time.perf_counter()
        blocked = literal_host_block(url, self.denied_ports, allow_private=self.allow_private)
        if blocked is not None:
            return HttpOutcome(None, FailureKind.SSRF_BLOCKED, blocked, b"", None, 0)
        try:
            async with asyncio.timeout(self.timeout_s):
                status, data, retry_after = await self._send(url, body, headers)
        except (aiohttp.ClientError, OSError, TimeoutError, SsrfBlocked, ValueError) as exc:
            kind = classify_exception(exc)
            error = (f"no response within {self.timeout_s:g} s" if kind is FailureKind.TIMEOUT
                     else _describe(exc))
            return HttpOutcome(None, kind, error, b"", None, _elapsed_ms(start))
        return HttpOutcome(status, None, None, data, retry_after, _elapsed_ms(start))

    async def _send(self, url: str, body: bytes,
                    headers: Mapping[str, str]) -> tuple[int, bytes, str | None]:
        async with self._session.post(url, data=body, headers=headers,
                                      allow_redirects=False) as response:
            data = await self._read_limited(response)
            return response.status, data, response.headers.get("Retry-After")

    async def _read_limited(self, response: aiohttp.ClientResponse) -> bytes:
        """Read at most ``max_body_bytes``; drop the connection if the body is longer."""
        chunks: list[bytes] = []
        remaining = self.max_body_bytes
        while remaining > 0:
            chunk = await response.content.read(min(remaining, _READ_CHUNK))
            if not chunk:
                break
            chunks.append(chunk)
            remaining -= len(chunk)
        if remaining <= 0 and not response.content.at_eof():
            response.close()  # do not download the rest; the connection is not reused
        return b"".join(chunks)


def _elapsed_ms(start: float) -> int:
    return max(0, int((time.perf_counter() - start) * 1000))
