"""Asynchronous host name resolution for the SSRF guard.

The caller decides what an address means; this module only turns a host name into the
addresses a connection to it could reach, within a time limit, and translates the resolver's
failures into :class:`ResolutionFailed` with a message fit for an API client.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable

DEFAULT_TIMEOUT_S = 3.0

Resolver = Callable[[str, int], Awaitable[list[str]]]
"""``(host, port) -> addresses``: the shape of :func:`resolve_host`, so tests can pass a fake."""

# Answers that mean "this name has no address", as opposed to "the resolver is unwell".
_NOT_FOUND = frozenset(
    code for code in (getattr(socket, name, None) for name in ("EAI_NONAME", "EAI_NODATA"))
    if code is not None
)


class ResolutionFailed(Exception):
    """The host could not be resolved; ``str(exc)`` explains why in one line.

    ``temporary`` is True when retrying later may succeed (timeout, resolver failure) and
    False when the name has no address.
    """

    def __init__(self, message: str, *, temporary: bool) -> None:
        super().__init__(message)
        self.temporary = temporary


async def resolve_host(host: str, port: int, timeout_s: float = DEFAULT_TIMEOUT_S) -> list[str]:
    """Every distinct address (IPv4 and IPv6, textual, without a zone id) of ``host``.

    Uses the event loop's ``getaddrinfo`` (the system resolver, ``/etc/hosts`` included) for TCP.
    Never returns an empty list. Raises :class:`ResolutionFailed` when the name does not
    resolve or resolution takes longer than ``timeout_s`` seconds.
    """
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(timeout_s):
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                           proto=socket.IPPROTO_TCP)
    except TimeoutError as exc:
        raise ResolutionFailed(f"resolving host {host!r} timed out after {timeout_s:g} s",
                               temporary=True) from exc
    except socket.gaierror as exc:
        temporary = exc.errno not in _NOT_FOUND
        reason = exc.strerror or "unknown error"
        raise ResolutionFailed(f"host {host!r} does not resolve ({reason})",
                               temporary=temporary) from exc
    except (UnicodeError, ValueError) as exc:
        raise ResolutionFailed(f"host {host!r} is not a valid host name",
                               temporary=False) from exc
    except OSError as exc:
        raise ResolutionFailed(f"resolving host {host!r} failed ({exc})", temporary=True) from exc
    addresses = list(dict.fromkeys(str(info[4][0]).partition("%")[0] for info in infos))
    if not addresses:
        raise ResolutionFailed(f"host {host!r} has no addresses", temporary=False)
    return addresses
