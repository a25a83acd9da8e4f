"""Run Postwire services (``python -m services.<name>``) as child processes.

Used by ``postwire dev up``, the end-to-end and fault tests, and the benchmarks. Each service is
its own session leader with a parent-death signal (see ``deploy.embedded.procs``), so it is
never left behind by a crashed parent.

Environment: the child gets the parent's environment *minus every* ``POSTWIRE_*`` *variable*,
plus ``env``. So the ``env`` you pass fully determines the service's Postwire configuration.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Final, Literal

from deploy.embedded import procs

ServiceName = Literal["ingest", "dispatcher", "dlq_replay"]
SERVICE_NAMES: Final[tuple[ServiceName, ...]] = ("ingest", "dispatcher", "dlq_replay")

#: Environment variable holding each service's listen port, and its default (README.md).
PORT_VARS: Final[dict[ServiceName, str]] = {
    "ingest": "POSTWIRE_INGEST_PORT",
    "dispatcher": "POSTWIRE_DISPATCHER_PORT",
    "dlq_replay": "POSTWIRE_ADMIN_PORT",
}
DEFAULT_PORTS: Final[dict[ServiceName, int]] = {
    "ingest": 8080,
    "dispatcher": 8081,
    "dlq_replay": 8082,
}


class ServiceStartError(RuntimeError):
    """A service exited or did not become healthy in time (message includes its log tail)."""


def service_available(name: ServiceName) -> bool:
    """True if ``services.<name>`` has a ``__main__`` module (the service has been written)."""
    try:
        return importlib.util.find_spec(f"services.{name}.__main__") is not None
    except ModuleNotFoundError:
        return False


def service_port(name: ServiceName, env: dict[str, str]) -> int:
    """The port the service will listen on given ``env`` (its port variable, else the default)."""
    raw = env.get(PORT_VARS[name])
    return int(raw) if raw else DEFAULT_PORTS[name]


class ServiceProcess:
    """A running service child. Create with ``start_service``. Methods block unless async."""

    def __init__(
        self, name: ServiceName, popen: subprocess.Popen[bytes], env: dict[str, str], log_path: Path
    ) -> None:
        self.name: Final = name
        self.popen: Final = popen
        self.env: Final = dict(env)
        self.log_path: Final = log_path
        self.host: Final = env.get("POSTWIRE_HOST", "127.0.0.1")
        self.port: Final = service_port(name, env)

    @property
    def pid(self) -> int:
        """PID of the child (also its process-group id)."""
        return self.popen.pid

    @property
    def base_url(self) -> str:
        """``http://HOST:PORT`` of the service."""
        return f"http://{self.host}:{self.port}"

    @property
    def returncode(self) -> int | None:
        """Exit status once it has exited, else None."""
        return self.popen.poll()

    def is_running(self) -> bool:
        """True while the child is alive."""
        return self.popen.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        """The last lines of the service's log."""
        return procs.log_tail(self.log_path, lines)

    def wait_healthy(self, url: str | None = None, timeout_s: float = 30.0) -> None:
        """Poll ``GET url`` (default ``{base_url}/healthz``) until it answers 200.

        Raises ServiceStartError, with the log tail, if the process exits first or ``timeout_s``
        passes. Blocks the calling thread (use ``wait_healthy_async`` inside an event loop).
        """
        target = url if url is not None else f"{self.base_url}/healthz"
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.is_running():
                raise ServiceStartError(
                    f"{self.name} exited with {self.returncode} before it was healthy; "
                    f"log {self.log_path}:\n{self.log_tail()}"
                )
            if _http_ok(target):
                return
            time.sleep(0.05)
        raise ServiceStartError(
            f"{self.name} not healthy at {target} within {timeout_s:.0f}s; "
            f"log {self.log_path}:\n{self.log_tail()}"
        )

    async def wait_healthy_async(self, url: str | None = None, timeout_s: float = 30.0) -> None:
        """``wait_healthy`` run in a worker thread, so the event loop keeps running."""
        await asyncio.to_thread(self.wait_healthy, url, timeout_s)

    def stop(self, timeout_s: float = 30.0) -> int | None:
        """SIGTERM (graceful drain), SIGKILL after ``timeout_s``. Idempotent.

        Blocks until the process is reaped; returns its exit status.
        """
        if self.popen.poll() is not None:
            return self.popen.returncode
        return procs.terminate(self.popen, signal.SIGTERM, timeout_s)

    def kill(self) -> None:
        """SIGKILL at once (crash simulation). Idempotent; blocks until reaped."""
        if self.popen.poll() is None:
            procs.kill_now(self.popen)

    def __repr__(self) -> str:
        return f"<ServiceProcess {self.name} pid={self.pid} {self.base_url}>"


def start_service(
    name: ServiceName,
    env: dict[str, str],
    log_path: Path,
    *,
    cwd: Path | None = None,
) -> ServiceProcess:
    """Start ``sys.executable -m services.<name>`` with ``env`` (see module docstring).

    Returns at once, without waiting for it to listen; call ``wait_healthy``. Output (stdout and
    stderr) is appended to ``log_path``. Raises OSError if the interpreter cannot be started.
    """
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("POSTWIRE_")}
    child_env.update(env)
    child_env.setdefault("PYTHONUNBUFFERED", "1")
    popen = procs.spawn(
        [sys.executable, "-m", f"services.{name}"], log_path=log_path, env=child_env, cwd=cwd
    )
    return ServiceProcess(name, popen, env, log_path)


_NO_PROXY_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _http_ok(url: str) -> bool:
    """True if ``GET url`` answers 200 within a second (never through an HTTP proxy)."""
    try:
        with _NO_PROXY_OPENER.open(url, timeout=1.0) as response:
            status: int = response.status
            return status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False
