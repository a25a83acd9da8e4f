"""Local TCP port helpers for the embedded stack, the CLI and the tests.

All helpers work on loopback only and never keep a socket open after they return, so a port
reported free can still be taken by someone else before it is used (callers that care check
again, or surface the bind failure of the process they start).
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

LOCALHOST = "127.0.0.1"


class PortInUseError(RuntimeError):
    """A port we were asked to listen on is already taken. The message names port and owner."""

    def __init__(self, port: int, purpose: str, hint: str = "") -> None:
        self.port = port
        self.purpose = purpose
        message = f"port {port} on {LOCALHOST} is already in use (wanted for {purpose})"
        super().__init__(f"{message}; {hint}" if hint else message)


def free_port(host: str = LOCALHOST) -> int:
    """Return a TCP port the kernel considers free right now (bind to port 0, then release)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def port_is_free(port: int, host: str = LOCALHOST) -> bool:
    """True if nothing listens on ``host:port`` and we could bind it (SO_REUSEADDR semantics)."""
    if can_connect(port, host, timeout_s=0.2):
        return False
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def ensure_port_free(port: int, purpose: str, hint: str = "", host: str = LOCALHOST) -> None:
    """Raise PortInUseError (naming ``purpose``) if ``host:port`` is taken."""
    if not port_is_free(port, host):
        raise PortInUseError(port, purpose, hint)


def pick_port(preferred: int | None, host: str = LOCALHOST) -> int:
    """``preferred`` if it is free, otherwise a random free port."""
    if preferred is not None and port_is_free(preferred, host):
        return preferred
    return free_port(host)


def can_connect(port: int, host: str = LOCALHOST, timeout_s: float = 0.5) -> bool:
    """True if a TCP connection to ``host:port`` succeeds within ``timeout_s``."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def wait_for_port(
    port: int,
    *,
    timeout_s: float,
    host: str = LOCALHOST,
    alive: Callable[[], bool] | None = None,
) -> bool:
    """Poll until ``host:port`` accepts TCP connections.

    Returns True once it does; False on timeout or as soon as ``alive()`` returns False (the
    process that should listen has died). Blocks the calling thread.
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if can_connect(port, host, timeout_s=0.5):
            return True
        if alive is not None and not alive():
            return False
        time.sleep(0.05)
    return False
