"""State of a local ``postwire dev`` run kept in its directory: the lock that allows one run
per directory, and the generated dev credentials (stable across runs)."""

from __future__ import annotations

import fcntl
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from deploy.embedded import procs

ADMIN_OPERATOR = "admin"


class AlreadyRunning(Exception):
    """Another ``postwire dev`` holds the lock of this directory."""


@dataclass(frozen=True)
class Credentials:
    """Dev credentials, generated once and kept in ``credentials.json`` so they stay stable."""

    api_key: str
    admin_token: str

    @property
    def admin_tokens_env(self) -> str:
        """Value for POSTWIRE_ADMIN_TOKENS (``operator:token``)."""
        return f"{ADMIN_OPERATOR}:{self.admin_token}"


def acquire_lock(path: Path) -> IO[str]:
    """Take an exclusive, non-blocking ``flock`` on ``path`` and write our PID into it.

    The lock lasts while the returned file stays open (children do not inherit it).
    Raises AlreadyRunning naming the holder's PID.
    """
    handle = path.open("a+")
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "unknown"
        handle.close()
        raise AlreadyRunning(
            f"another `postwire dev` is already running on {path.parent} (pid {holder}); "
            "stop it first (Ctrl-C in its terminal, or kill its pid)"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


def load_credentials(path: Path) -> Credentials:
    """Read the dev credentials, creating them (owner-only file) on first use or if unreadable."""
    try:
        data = json.loads(path.read_text())
        return Credentials(api_key=str(data["api_key"]), admin_token=str(data["admin_token"]))
    except (OSError, ValueError, KeyError, TypeError):
        creds = Credentials(
            api_key=f"pw_test_{secrets.token_hex(16)}", admin_token=secrets.token_urlsafe(24)
        )
        body = {"api_key": creds.api_key, "admin_token": creds.admin_token}
        procs.write_text_private(path, json.dumps(body, indent=2) + "\n")
        return creds
