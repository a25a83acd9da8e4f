"""A real Apache Kafka 3.3.1 broker with a SASL_PLAINTEXT listener that authenticates SCRAM users.

Why ZooKeeper mode and not KRaft like :mod:`tests.support.real_kafka`: Kafka 3.3's KRaft mode
cannot store SCRAM credentials (that came with KIP-900 in 3.5), so a SCRAM listener is only
possible with a ZooKeeper-backed broker. The distribution ships the ZooKeeper server classes
(``zookeeper-3.6.3.jar``); both JVMs are started through its ``kafka-run-class.sh``.

Listeners, all on 127.0.0.1 and free random ports:
- ``SASL_PLAINTEXT`` (``sasl_bootstrap``): SCRAM-SHA-256 and SCRAM-SHA-512; what the tests use;
- ``SASL_SSL`` (``sasl_ssl_bootstrap``): the same over TLS, with a self-signed certificate for
  127.0.0.1 (made with the ``openssl`` command; ``ca_file`` is what clients must trust);
- ``PLAINTEXT`` (``plain_bootstrap``): inter-broker traffic and the admin tool that creates the
  SCRAM users (``kafka-configs.sh --alter --add-config SCRAM-SHA-256=[...]``).

Lifetime: both JVMs run in their own session and are stopped by PID (SIGTERM, then SIGKILL);
``stop()`` is idempotent and registered with ``atexit``.
"""

from __future__ import annotations

import atexit
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from deploy.embedded.ports import can_connect, free_port
from tests.support.real_kafka import RealKafkaError, kafka_dist_dir


def _wait_port(port: int, proc: subprocess.Popen[bytes], log: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RealKafkaError(f"exited with {proc.returncode}: {_tail(log)}")
        if can_connect(port, "127.0.0.1", timeout_s=0.5):
            return
        time.sleep(0.2)
    raise RealKafkaError(f"port {port} not open after {timeout_s:.0f} s: {_tail(log)}")


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@dataclass
class ScramKafka:
    """ZooKeeper + one broker under ``state_dir``; ``start()`` returns once a SCRAM user can be
    created, ``add_user()`` creates one, ``stop()`` stops both JVMs."""

    state_dir: Path
    dist: Path = field(default_factory=lambda: kafka_dist_dir() / "dist")
    zk_port: int = 0
    plain_port: int = 0
    sasl_port: int = 0
    sasl_ssl_port: int = 0
    _procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def sasl_bootstrap(self) -> str:
        """``127.0.0.1:PORT`` of the SASL_PLAINTEXT (SCRAM) listener."""
        return f"127.0.0.1:{self.sasl_port}"

    @property
    def sasl_ssl_bootstrap(self) -> str:
        """``127.0.0.1:PORT`` of the SASL_SSL listener."""
        return f"127.0.0.1:{self.sasl_ssl_port}"

    @property
    def ca_file(self) -> Path:
        """The broker's self-signed certificate: the CA a TLS client must trust."""
        return self.state_dir / "broker.crt"

    def _make_certificate(self) -> Path:
        """A key and self-signed certificate for 127.0.0.1; returns the PEM keystore (PKCS#8
        key followed by the certificate, as Kafka's ``ssl.keystore.type=PEM`` reads it)."""
        key = self.state_dir / "broker.key"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                        "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                        "-keyout", str(key), "-out", str(self.ca_file)],
                       check=True, capture_output=True, timeout=60)
        keystore = self.state_dir / "broker-keystore.pem"
        keystore.write_text(key.read_text() + self.ca_file.read_text())
        return keystore

    @property
    def plain_bootstrap(self) -> str:
        """``127.0.0.1:PORT`` of the unauthenticated PLAINTEXT listener (admin tools only)."""
        return f"127.0.0.1:{self.plain_port}"

    def _env(self, log_dir: Path) -> dict[str, str]:
        env = dict(os.environ)
        env.update(KAFKA_HEAP_OPTS="-Xmx384M -Xms64M", LOG_DIR=str(log_dir))
        env.setdefault("KAFKA_OPTS", "-XX:TieredStopAtLevel=1")
        for name in ("CLASSPATH", "JMX_PORT", "KAFKA_DEBUG", "KAFKA_LOG4J_OPTS"):
            env.pop(name, None)
        return env

    def _launch(self, name: str, main_class: str, config: Path) -> subprocess.Popen[bytes]:
        log_dir = self.state_dir / f"{name}-logs"
        log_dir.mkdir(parents=True, exist_ok=True)
        out = (log_dir / "stdout.log").open("wb")
        proc = subprocess.Popen(
            [str(self.dist / "bin" / "kafka-run-class.sh"), main_class, str(config)],
            env=self._env(log_dir), stdout=out, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True)
        out.close()
        self._procs.append(proc)
        return proc

    def _write_configs(self) -> tuple[Path, Path]:
        zk = self.state_dir / "zookeeper.properties"
        zk.write_text(f"dataDir={self.state_dir / 'zk-data'}\nclientPort={self.zk_port}\n"
                      "clientPortAddress=127.0.0.1\nadmin.enableServer=false\n"
                      "maxClientCnxns=0\n")
        broker = self.state_dir / "server.properties"
        jaas = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
        listeners = (f"PLAINTEXT://127.0.0.1:{self.plain_port},"
                     f"SASL_PLAINTEXT://127.0.0.1:{self.sasl_port},"
                     f"SASL_SSL://127.0.0.1:{self.sasl_ssl_port}")
        broker.write_text("\n".join([
            "broker.id=0", f"zookeeper.connect=127.0.0.1:{self.zk_port}",
            f"listeners={listeners}", f"advertised.listeners={listeners}",
            "inter.broker.listener.name=PLAINTEXT",
            "sasl.enabled.mechanisms=SCRAM-SHA-256,SCRAM-SHA-512",
            *(f"listener.name.{name}.scram-sha-{bits}.sasl.jaas.config={jaas}"
              for name in ("sasl_plaintext", "sasl_ssl") for bits in (256, 512)),
            "listener.name.sasl_ssl.ssl.keystore.type=PEM",
            f"listener.name.sasl_ssl.ssl.keystore.location={self._make_certificate()}",
            f"log.dirs={self.state_dir / 'kafka-data'}",
            "auto.create.topics.enable=false", "num.partitions=4",
            "offsets.topic.replication.factor=1", "offsets.topic.num.partitions=4",
            "transaction.state.log.replication.factor=1", "transaction.state.log.min.isr=1",
            "group.initial.rebalance.delay.ms=0", ""]))
        return zk, broker

    def start(self, timeout_s: float = 90.0) -> None:
        """Start ZooKeeper and the broker; returns once the broker accepts admin requests.

        Raises RealKafkaError with a log tail when either JVM fails or is too slow."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        atexit.register(self.stop)
        self.zk_port, self.plain_port, self.sasl_port = free_port(), free_port(), free_port()
        self.sasl_ssl_port = free_port()
        zk_conf, broker_conf = self._write_configs()
        zk = self._launch("zookeeper", "org.apache.zookeeper.server.quorum.QuorumPeerMain",
                          zk_conf)
        _wait_port(self.zk_port, zk, self.state_dir / "zookeeper-logs" / "stdout.log", timeout_s)
        broker = self._launch("kafka", "kafka.Kafka", broker_conf)
        _wait_port(self.sasl_port, broker, self.state_dir / "kafka-logs" / "stdout.log",
                   timeout_s)

    def add_user(self, user: str, password: str, timeout_s: float = 60.0) -> None:
        """Create SCRAM-SHA-256 and SCRAM-SHA-512 credentials for ``user`` with
        ``kafka-configs.sh`` (retried until the broker's controller is ready)."""
        argv = [str(self.dist / "bin" / "kafka-configs.sh"), "--bootstrap-server",
                self.plain_bootstrap, "--alter", "--entity-type", "users", "--entity-name", user,
                "--add-config",
                f"SCRAM-SHA-256=[iterations=4096,password={password}],"
                f"SCRAM-SHA-512=[password={password}]"]
        deadline = time.monotonic() + timeout_s
        last = ""
        while time.monotonic() < deadline:
            result = subprocess.run(argv, env=self._env(self.state_dir / "tool-logs"),
                                    capture_output=True, text=True, timeout=timeout_s,
                                    stdin=subprocess.DEVNULL, check=False)
            if result.returncode == 0 and "Completed" in result.stdout:
                return
            last = (result.stdout + result.stderr)[-2000:]
            time.sleep(1.0)
        raise RealKafkaError(f"kafka-configs.sh could not create SCRAM user {user}: {last}")

    def stop(self) -> None:
        """Stop the broker, then ZooKeeper, by PID (SIGTERM, SIGKILL after 20 s); idempotent."""
        for proc in reversed(self._procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(timeout=10)
        self._procs.clear()
