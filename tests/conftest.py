"""Session fixtures shared by every test layer.

Nothing here starts a process unless a test asks for it (directly or through another fixture):
unit tests stay process-free.

Fixtures (scope: meaning):
- ``stack`` (session): one ``EmbeddedStack`` (Postgres + broker) under a pytest temp dir, stopped
  at session end, by finalizer and by ``atexit``. Restarting or killing its parts is allowed
  (fault tests), but then restart them before the test ends.
- ``kafka_bootstrap`` (session): the broker's ``127.0.0.1:PORT``.
- ``database_url`` (MODULE): a fresh, migrated database ``test_<hex>`` for the test module,
  dropped ``WITH (FORCE)`` afterwards. Tests of one module share it, so use unique ids.
- ``fresh_database_url`` (function): the same, but one database per test.
- ``topic_prefix`` (module): a unique topic prefix such as ``t1a2b3c4d.``.
- ``api_key`` / ``admin_token`` (session): ``test-key`` / ``test-admin-token`` (operator
  ``admin``), the credentials ``service_env`` configures.
- ``service_env`` (module): a factory ``service_env(**overrides) -> dict[str, str]`` with the
  full environment for a service (see ``ServiceEnvFactory``).
- ``run_service`` (function): a factory ``run_service(name, env=None, *, wait=True)`` that
  starts ``services.<name>``, waits for ``/healthz`` and stops it at the end of the test.
- ``real_kafka`` (function): a factory ``real_kafka(nodes=1)`` that starts a real Apache Kafka
  3.3.1 cluster (``tests.support.real_kafka.RealKafkaCluster``, 1 or 3 nodes, random free
  ports, state under the test's tmp dir) and stops it at the end of the test (and at exit).
"""

from __future__ import annotations

import atexit
import os
import signal
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Protocol

import asyncpg
import pytest
import pytest_asyncio
from hypothesis import settings as hypothesis_settings

from deploy.embedded.ports import free_port
from deploy.embedded.services import ServiceName, ServiceProcess, start_service
from deploy.embedded.stack import EmbeddedStack
from tests.support.real_kafka import RealKafkaCluster

TEST_API_KEY = "test-key"
TEST_ADMIN_OPERATOR = "admin"
TEST_ADMIN_TOKEN = "test-admin-token"

# Property tests draw the same examples on every run of `make test` (CI is reproducible: a red run
# fails again on the same input), and keep no example database in the checkout. Set
# HYPOTHESIS_PROFILE=explore to draw fresh random examples while hunting for bugs.
hypothesis_settings.register_profile("repeatable", derandomize=True, database=None)
hypothesis_settings.register_profile("explore", derandomize=False)
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "repeatable"))

_LAYERS = ("unit", "integration", "e2e", "faults")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test with its layer (``unit``, ``integration``, ``e2e``, ``faults``) by folder,
    so ``pytest -m unit`` selects a layer."""
    for item in items:
        parts = item.path.parts
        for layer in _LAYERS:
            if layer in parts:
                item.add_marker(getattr(pytest.mark, layer))


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedStack]:
    """The session's embedded Postgres + broker (random free ports), started on first use."""
    embedded = EmbeddedStack(base_dir=tmp_path_factory.mktemp("stack"))
    atexit.register(embedded.stop)
    embedded.start()
    try:
        yield embedded
    finally:
        embedded.stop()


@pytest.fixture(scope="session")
def kafka_bootstrap(stack: EmbeddedStack) -> str:
    """Bootstrap servers string of the session broker."""
    return stack.kafka_bootstrap


@pytest.fixture(scope="session")
def api_key() -> str:
    """The ingest API key that ``service_env`` configures."""
    return TEST_API_KEY


@pytest.fixture(scope="session")
def admin_token() -> str:
    """The admin bearer token that ``service_env`` configures (operator ``admin``)."""
    return TEST_ADMIN_TOKEN


async def _create_database(stack: EmbeddedStack) -> tuple[str, str]:
    """Create and migrate a fresh database; return (name, dsn)."""
    from shared.adapters.pg.migrations import apply_migrations

    name = f"test_{uuid.uuid4().hex}"
    conn = await asyncpg.connect(stack.postgres.dsn_for("postgres"))
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    dsn = stack.postgres.dsn_for(name)
    await apply_migrations(dsn)
    return name, dsn


async def _drop_database(stack: EmbeddedStack, name: str) -> None:
    if not stack.postgres.is_running():
        return  # a fault test left it down; the data dir goes away with the session
    conn = await asyncpg.connect(stack.postgres.dsn_for("postgres"))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@pytest_asyncio.fixture(scope="module")
async def database_url(stack: EmbeddedStack) -> AsyncIterator[str]:
    """DSN of a fresh, migrated database for this test module; dropped after the module."""
    name, dsn = await _create_database(stack)
    try:
        yield dsn
    finally:
        await _drop_database(stack, name)


@pytest_asyncio.fixture
async def fresh_database_url(stack: EmbeddedStack) -> AsyncIterator[str]:
    """DSN of a fresh, migrated database for this one test; dropped after it."""
    name, dsn = await _create_database(stack)
    try:
        yield dsn
    finally:
        await _drop_database(stack, name)


@pytest.fixture(scope="module")
def topic_prefix() -> str:
    """A topic prefix unique to this test module, e.g. ``t1a2b3c4d.``."""
    return f"t{uuid.uuid4().hex[:8]}."


class ServiceEnvFactory:
    """Builds service environments for one test module.

    ``factory(**overrides)`` returns a new dict with POSTWIRE_DATABASE_URL (the module's
    ``database_url``), POSTWIRE_KAFKA_BOOTSTRAP, POSTWIRE_TOPIC_PREFIX (the module's
    ``topic_prefix``), POSTWIRE_API_KEYS=test-key, POSTWIRE_ADMIN_TOKENS=admin:test-admin-token,
    POSTWIRE_ALLOW_PRIVATE_TARGETS=true, POSTWIRE_HOST=127.0.0.1 and fresh free ports in
    POSTWIRE_INGEST_PORT / POSTWIRE_DISPATCHER_PORT / POSTWIRE_ADMIN_PORT (new ones each call).
    Keyword overrides use the variable name without the ``POSTWIRE_`` prefix, e.g.
    ``service_env(RETRY_SCHEDULE="0,1,1")``; a value of None removes the variable.
    """

    def __init__(self, database_url: str, kafka_bootstrap: str, topic_prefix: str) -> None:
        self.database_url = database_url
        self.kafka_bootstrap = kafka_bootstrap
        self.topic_prefix = topic_prefix

    def __call__(self, **overrides: str | None) -> dict[str, str]:
        env = {
            "POSTWIRE_DATABASE_URL": self.database_url,
            "POSTWIRE_KAFKA_BOOTSTRAP": self.kafka_bootstrap,
            "POSTWIRE_TOPIC_PREFIX": self.topic_prefix,
            "POSTWIRE_API_KEYS": TEST_API_KEY,
            "POSTWIRE_ADMIN_TOKENS": f"{TEST_ADMIN_OPERATOR}:{TEST_ADMIN_TOKEN}",
            "POSTWIRE_ALLOW_PRIVATE_TARGETS": "true",
            "POSTWIRE_HOST": "127.0.0.1",
            "POSTWIRE_INGEST_PORT": str(free_port()),
            "POSTWIRE_DISPATCHER_PORT": str(free_port()),
            "POSTWIRE_ADMIN_PORT": str(free_port()),
        }
        for key, value in overrides.items():
            name = key if key.startswith("POSTWIRE_") else f"POSTWIRE_{key}"
            if value is None:
                env.pop(name, None)
            else:
                env[name] = value
        return env


@pytest.fixture(scope="module")
def service_env(database_url: str, kafka_bootstrap: str, topic_prefix: str) -> ServiceEnvFactory:
    """Factory of service environments for this module (see ``ServiceEnvFactory``)."""
    return ServiceEnvFactory(database_url, kafka_bootstrap, topic_prefix)


class RunService(Protocol):
    """Signature of the ``run_service`` fixture's factory."""

    def __call__(
        self, name: ServiceName, env: dict[str, str] | None = None, *, wait: bool = True
    ) -> ServiceProcess: ...


@pytest.fixture
def run_service(service_env: ServiceEnvFactory, tmp_path: Path) -> Iterator[RunService]:
    """Factory ``run_service(name, env=None, *, wait=True)``: start ``services.<name>`` with
    ``env`` (default ``service_env()``) and, with ``wait``, block until ``/healthz`` answers
    (raises ServiceStartError with the log tail otherwise). Async tests that serve something
    in their own loop should pass ``wait=False`` and ``await service.wait_healthy_async()``.
    Every service it started is stopped (SIGTERM, then SIGKILL) when the test ends. Logs go to
    ``tmp_path/<name>-<n>.log``.
    """
    started: list[ServiceProcess] = []

    def run(
        name: ServiceName, env: dict[str, str] | None = None, *, wait: bool = True
    ) -> ServiceProcess:
        log_path = tmp_path / f"{name}-{len(started)}.log"
        service = start_service(name, env if env is not None else service_env(), log_path)
        started.append(service)
        if wait:
            service.wait_healthy(timeout_s=60.0)
        return service

    try:
        yield run
    finally:
        for service in reversed(started):
            service.stop()


def read_until(proc: subprocess.Popen[str], prefix: str) -> str:
    """What ``proc`` printed up to and including its first line starting with ``prefix``
    (everything, if it ends first). ``proc`` must have ``stdout=PIPE`` in text mode."""
    assert proc.stdout is not None
    seen: list[str] = []
    for line in proc.stdout:
        seen.append(line)
        if line.startswith(prefix):
            break
    return "".join(seen)


def assert_stops_cleanly(proc: subprocess.Popen[str], children: list[int],
                         timeout_s: float) -> None:
    """SIGTERM a ``postwire dev`` process: it exits 0, says so, and no child outlives it."""
    from deploy.embedded import procs

    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=timeout_s) == 0
    assert "stopped: no child process left running" in read_until(proc, "stopped:")
    assert not [pid for pid in children if procs.pid_alive(pid)]


class RealKafkaFactory(Protocol):
    """Signature of the ``real_kafka`` fixture's factory."""

    def __call__(self, nodes: int = 1) -> RealKafkaCluster: ...


@pytest.fixture
def real_kafka(tmp_path: Path) -> Iterator[RealKafkaFactory]:
    """Factory ``real_kafka(nodes=1)``: start a real Apache Kafka cluster (1 or 3 nodes) on free
    random ports with its state in ``tmp_path/kafka-<n>`` and return it once it is usable
    (``cluster.bootstrap``). Every cluster it started is stopped when the test ends (and by
    ``atexit`` if the process exits first). Fails, never skips, when the distribution or Java
    is missing: see ``tests.support.real_kafka``.
    """
    started: list[RealKafkaCluster] = []

    def start(nodes: int = 1) -> RealKafkaCluster:
        cluster = RealKafkaCluster(state_dir=tmp_path / f"kafka-{len(started)}", nodes=nodes)
        started.append(cluster)
        cluster.start()
        return cluster

    try:
        yield start
    finally:
        errors: list[Exception] = []
        for cluster in reversed(started):
            try:
                cluster.stop()
            except Exception as exc:  # stop the others even if one fails
                errors.append(exc)
        if errors:
            raise errors[0]
