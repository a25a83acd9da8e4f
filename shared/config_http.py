"""Settings of the HTTP front every service runs, and the target port policy.

Extensions (not in the contract), all optional, read by every service:

- ``POSTWIRE_HTTP_IDLE_TIMEOUT_S`` (default 60): a connection with no request in progress
  (just opened, or after a response) is closed after this long.
- ``POSTWIRE_HTTP_HEADER_TIMEOUT_S`` (default 10): the request line and headers must be
  complete this long after their first byte arrived, or the connection is closed.
- ``POSTWIRE_HTTP_BODY_TIMEOUT_S`` (default 60): the whole request body must have arrived this
  long after the headers, or the request is refused (400) and the connection closed.
- ``POSTWIRE_HTTP_MAX_CONNECTIONS`` (default 4096): open connections per process; at the limit
  a new connection first evicts the longest-idle one, and is refused (503) when none is idle.
  Lowered at start to the open-files limit minus 128 when that is smaller.
- ``POSTWIRE_HTTP_MAX_INFLIGHT_BODY_BYTES`` (default 64 MiB): request body bytes held by all
  requests in progress; a request that would exceed it is refused with 429 (``Retry-After:
  1``), except that a request alone in progress is always admitted up to its route's own
  limit.
- ``POSTWIRE_METRICS_PORT`` / ``POSTWIRE_METRICS_HOST``: when the port is set, ``/metrics``
  is served on that address only (host default ``POSTWIRE_HOST``) and the service port
  answers 404 for it. Unset (the default): ``/metrics`` is on the service port.
- ``POSTWIRE_DENIED_TARGET_PORTS`` (default :data:`shared.core.ssrf.DEFAULT_DENIED_TARGET_PORTS`):
  ports an endpoint URL may not use, comma-separated ports or ranges, ``none`` for no policy.
  Applied at endpoint creation and update, and again before every delivery attempt.
"""

from __future__ import annotations

import ipaddress
import resource
from collections.abc import Mapping
from dataclasses import dataclass

from shared.config import env_float, env_int, env_str
from shared.core.errors import ConfigError
from shared.core.ssrf import DEFAULT_DENIED_TARGET_PORTS, parse_port_set

FD_RESERVE = 128
"""File descriptors kept for everything but client connections (pool, Kafka, logs)."""
MIN_CONNECTIONS = 16


@dataclass(frozen=True)
class HttpServerSettings:
    """Timeouts and limits of one service's HTTP listener (see the module docstring)."""

    idle_timeout_s: float = 60.0
    header_timeout_s: float = 10.0
    body_timeout_s: float = 60.0
    max_connections: int = 4096
    max_inflight_body_bytes: int = 64 * 1024 * 1024
    metrics_host: str | None = None
    metrics_port: int | None = None


def open_files_limit() -> int | None:
    """The soft RLIMIT_NOFILE of this process, or None when unlimited."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return None if soft == resource.RLIM_INFINITY else int(soft)


def effective_max_connections(configured: int, files_limit: int | None) -> int:
    """``configured``, lowered to ``files_limit - FD_RESERVE`` (at least 16) so that accepting
    connections can never exhaust the process's file descriptors."""
    if files_limit is None:
        return configured
    return max(MIN_CONNECTIONS, min(configured, files_limit - FD_RESERVE))


def load_http_settings(env: Mapping[str, str], listen_host: str) -> HttpServerSettings:
    """Read the ``POSTWIRE_HTTP_*`` and ``POSTWIRE_METRICS_*`` variables; ConfigError on a bad
    one. ``listen_host`` (``POSTWIRE_HOST``) is the default metrics host."""
    metrics_port: int | None = None
    if env.get("POSTWIRE_METRICS_PORT", "").strip():
        metrics_port = env_int(env, "POSTWIRE_METRICS_PORT", None, 1, 65535)
    metrics_host = env_str(env, "POSTWIRE_METRICS_HOST", listen_host)
    if metrics_host != "localhost":
        try:
            ipaddress.ip_address(metrics_host)
        except ValueError as exc:
            raise ConfigError(f"POSTWIRE_METRICS_HOST={metrics_host!r} is not valid: expected "
                              "an IP address") from exc
    return HttpServerSettings(
        idle_timeout_s=env_float(env, "POSTWIRE_HTTP_IDLE_TIMEOUT_S", 60.0, 0.1, 3600.0),
        header_timeout_s=env_float(env, "POSTWIRE_HTTP_HEADER_TIMEOUT_S", 10.0, 0.1, 600.0),
        body_timeout_s=env_float(env, "POSTWIRE_HTTP_BODY_TIMEOUT_S", 60.0, 0.1, 3600.0),
        max_connections=effective_max_connections(
            env_int(env, "POSTWIRE_HTTP_MAX_CONNECTIONS", 4096, MIN_CONNECTIONS, 1_000_000),
            open_files_limit()),
        max_inflight_body_bytes=env_int(env, "POSTWIRE_HTTP_MAX_INFLIGHT_BODY_BYTES",
                                        64 * 1024 * 1024, 64 * 1024, 64 * 1024 * 1024 * 1024),
        metrics_host=metrics_host if metrics_port is not None else None,
        metrics_port=metrics_port,
    )


def load_denied_target_ports(env: Mapping[str, str]) -> frozenset[int]:
    """``POSTWIRE_DENIED_TARGET_PORTS`` as a set of ports (``none``: the empty set)."""
    raw = env_str(env, "POSTWIRE_DENIED_TARGET_PORTS", DEFAULT_DENIED_TARGET_PORTS)
    try:
        return parse_port_set(raw)
    except ValueError as exc:
        raise ConfigError(f"POSTWIRE_DENIED_TARGET_PORTS={raw!r} is not valid: {exc}") from exc
