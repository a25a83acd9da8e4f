"""A real Apache Kafka 3.3.1 cluster (KRaft, 1 or 3 nodes) for integration and fault tests.

The cluster is driven only through the distribution's own scripts (``start.sh``, ``stop.sh``,
``kill-node.sh``, ``start-node.sh``), which find, verify and signal the JVMs by the pid files in
the cluster's state dir: nothing is ever killed by name.

Where the distribution is: env var ``POSTWIRE_KAFKA_DIST``, default ``<repo root>/../shared/kafka``
(CI keeps a read-only copy of that folder beside the checkout). Java 17 must be installed.

Ports: node i listens on ``port_base + i`` (clients) and ``port_base + 100 + i`` (controller).
``RealKafkaCluster.start`` picks a random base whose whole port set is free on 127.0.0.1, so
concurrent clusters (other tests, other engineers' runs) never collide; ``start.sh`` refuses a
port that was taken in between and we then retry with another base.

Lifetime: ``stop()`` is idempotent and also registered with ``atexit`` at start, so a cluster
never outlives the test process that started it on a normal exit; the pytest fixtures in
``tests/conftest.py`` also stop it in a finalizer.
"""

from __future__ import annotations

import atexit
import os
import random
import shlex
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from deploy.embedded.ports import LOCALHOST, can_connect, port_is_free

REPO_ROOT = Path(__file__).resolve().parents[2]
DIST_ENV = "POSTWIRE_KAFKA_DIST"
CONTROLLER_OFFSET = 100
_PORT_RANGE = (20000, 59000)
_START_ATTEMPTS = 4


class RealKafkaError(RuntimeError):
    """A script of the Kafka distribution failed; the message carries its stderr tail."""


def kafka_dist_dir() -> Path:
    """The distribution folder (with start.sh): ``$POSTWIRE_KAFKA_DIST``, else
    ``<repo>/../shared/kafka``.

    Raises RealKafkaError, naming the path and the variable, when start.sh is not there.
    """
    configured = os.environ.get(DIST_ENV)
    path = Path(configured) if configured else REPO_ROOT.parent / "shared" / "kafka"
    if not (path / "start.sh").is_file():
        raise RealKafkaError(
            f"no Apache Kafka distribution at {path} (start.sh missing); set {DIST_ENV}"
        )
    return path.resolve()


def ports_of(port_base: int, nodes: int) -> list[int]:
    """Every port a cluster with this base and node count listens on."""
    return [port_base + i for i in range(nodes)] + [
        port_base + CONTROLLER_OFFSET + i for i in range(nodes)
    ]


def pick_port_base(nodes: int, rng: random.Random | None = None) -> int:
    """A random port base whose client and controller ports are all free right now."""
    chooser = rng or random.Random()
    for _ in range(200):
        base = chooser.randrange(*_PORT_RANGE)
        if all(port_is_free(port) for port in ports_of(base, nodes)):
            return base
    raise RealKafkaError(f"no free port set for a {nodes}-node Kafka cluster after 200 tries")


def _tail(text: str, lines: int = 25) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


@dataclass
class RealKafkaCluster:
    """One Kafka cluster whose configs, data, logs and pid files live in ``state_dir``.

    ``start()`` formats and starts a fresh cluster (wiping what an earlier start left in
    ``state_dir``); ``stop()`` stops it (SIGTERM, then SIGKILL after ``stop_timeout_s``).
    ``kill_node(i)`` / ``start_node(i)`` kill -9 and restart one node on its existing data;
    ``restart_empty()`` kills every node and starts a new, empty cluster on the same ports.
    """

    state_dir: Path
    nodes: int = 1
    heap: str = "512M"
    start_timeout_s: int = 120
    stop_timeout_s: int = 15
    dist: Path = field(default_factory=kafka_dist_dir)
    port_base: int | None = None
    bootstrap: str = ""
    _atexit_registered: bool = False

    def __post_init__(self) -> None:
        if self.nodes not in (1, 3):
            raise ValueError(f"nodes must be 1 or 3, not {self.nodes}")

    # -- scripts ---------------------------------------------------------------------------------

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            KAFKA_NODES=str(self.nodes),
            KAFKA_STATE_DIR=str(self.state_dir),
            KAFKA_HEAP=self.heap,
            KAFKA_START_TIMEOUT=str(self.start_timeout_s),
            KAFKA_STOP_TIMEOUT=str(self.stop_timeout_s),
        )
        if self.port_base is not None:
            env["KAFKA_PORT"] = str(self.port_base)
        # Fast JIT start: tests need a quick start more than peak broker throughput.
        env.setdefault("KAFKA_OPTS", "-XX:TieredStopAtLevel=1")
        return env

    def _script(self, name: str, *args: str, timeout_s: float) -> subprocess.CompletedProcess[str]:
        argv = [str(self.dist / name), *args]
        try:
            return subprocess.run(
                argv, env=self._env(), capture_output=True, text=True, timeout=timeout_s,
                stdin=subprocess.DEVNULL, check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise RealKafkaError(f"{shlex.join(argv)} did not finish in {timeout_s:.0f} s") from exc

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> str:
        """Start a fresh cluster and return its bootstrap string once it is usable.

        Picks a free random port base unless one is set (a restart keeps its base). Retries
        with a new base when start.sh reports a port collision. Raises RealKafkaError with the
        script's stderr tail otherwise.
        """
        self.state_dir.mkdir(parents=True, exist_ok=True)
        if not self._atexit_registered:
            atexit.register(self.stop)
            self._atexit_registered = True
        fixed_base = self.port_base is not None
        last_error = ""
        for _ in range(_START_ATTEMPTS):
            if not fixed_base:
                self.port_base = pick_port_base(self.nodes)
            result = self._script("start.sh", timeout_s=self.start_timeout_s + 30)
            if result.returncode == 0:
                self.bootstrap = self._parse_bootstrap(result.stdout)
                return self.bootstrap
            last_error = _tail(result.stderr)
            if fixed_base or "already in use" not in result.stderr:
                break
        raise RealKafkaError(f"start.sh failed (port base {self.port_base}):\n{last_error}")

    @staticmethod
    def _parse_bootstrap(stdout: str) -> str:
        for line in stdout.splitlines():
            if line.startswith("export KAFKA_BOOTSTRAP="):
                return line.split("=", 1)[1].strip().strip("'\"")
        raise RealKafkaError(f"start.sh printed no KAFKA_BOOTSTRAP:\n{_tail(stdout)}")

    def stop(self) -> None:
        """Stop every node of the cluster (idempotent; nothing to do when none runs)."""
        if not (self.state_dir / "cluster.env").exists():
            return
        if not any(self.state_dir.glob("node-*.pid")):
            return
        result = self._script("stop.sh", str(self.state_dir), timeout_s=self.stop_timeout_s + 30)
        if result.returncode != 0:
            raise RealKafkaError(f"stop.sh failed:\n{_tail(result.stderr)}")

    def kill_node(self, index: int) -> None:
        """kill -9 node ``index`` (its data stays); returns once the JVM is gone."""
        result = self._script("kill-node.sh", str(index), str(self.state_dir), timeout_s=30)
        if result.returncode != 0:
            raise RealKafkaError(f"kill-node.sh {index} failed:\n{_tail(result.stderr)}")

    def start_node(self, index: int) -> None:
        """Restart node ``index`` on its existing data; returns once it is registered again."""
        result = self._script(
            "start-node.sh", str(index), str(self.state_dir), timeout_s=self.start_timeout_s + 30
        )
        if result.returncode != 0:
            raise RealKafkaError(f"start-node.sh {index} failed:\n{_tail(result.stderr)}")

    def kill_all(self) -> None:
        """kill -9 every running node (a whole-cluster crash; the data stays on disk)."""
        for index in range(self.nodes):
            if (self.state_dir / f"node-{index}.pid").exists():
                self.kill_node(index)

    def restart_empty(self) -> str:
        """kill -9 every node, then start a new, empty cluster (new cluster id, no topics, no
        offsets) on the same ports: the "broker lost its log" fault. Returns the bootstrap."""
        self.kill_all()
        return self.start()

    def node_port(self, index: int) -> int:
        """Client port of node ``index``."""
        if self.port_base is None:
            raise RealKafkaError("cluster not started")
        return self.port_base + index

    def node_reachable(self, index: int) -> bool:
        """True if node ``index`` accepts TCP connections on its client port."""
        return can_connect(self.node_port(index), LOCALHOST, timeout_s=0.5)

    def server_log(self, index: int = 0) -> Path:
        """Path of node ``index``'s server.log (for failure messages)."""
        return self.state_dir / f"node-{index}" / "logs" / "server.log"

    def wait_unreachable(self, timeout_s: float = 10.0) -> None:
        """Block until no node accepts connections (after kill_all)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not any(self.node_reachable(i) for i in range(self.nodes)):
                return
            time.sleep(0.05)
        raise RealKafkaError("a Kafka node still accepts connections")
