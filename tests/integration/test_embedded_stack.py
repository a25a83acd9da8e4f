"""The embedded stack itself: Postgres and the broker start, persist (or not), restart and stop
without leaving processes behind."""

from __future__ import annotations

import asyncio
import os
import shlex
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from deploy.embedded import procs
from deploy.embedded.broker import EmbeddedBroker
from deploy.embedded.ports import PortInUseError, free_port
from deploy.embedded.stack import EmbeddedStack
from tests.conftest import assert_stops_cleanly, read_until


async def _fetchval(dsn: str, sql: str) -> object:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval(sql)
    finally:
        await conn.close()


async def _create_topic(bootstrap: str, topic: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    finally:
        await admin.close()


async def _topics(bootstrap: str) -> list[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return list(await admin.list_topics())
    finally:
        await admin.close()


async def _produce(bootstrap: str, topic: str, value: bytes) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(topic, value, key=b"k")
    finally:
        await producer.stop()


@pytest.fixture(scope="module")
def own_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedStack]:
    """A private stack that these tests may restart and kill without disturbing the session's."""
    with EmbeddedStack(base_dir=tmp_path_factory.mktemp("own-stack")) as embedded:
        yield embedded


async def test_session_postgres_answers(stack: EmbeddedStack) -> None:
    assert await _fetchval(stack.database_url, "SELECT 1") == 1
    assert stack.database_url.endswith("/postwire")


async def test_database_url_is_a_fresh_migrated_database(database_url: str) -> None:
    name = await _fetchval(database_url, "SELECT current_database()")
    assert isinstance(name, str) and name.startswith("test_")
    assert await _fetchval(database_url, "SELECT count(*) FROM schema_migrations") >= 1  # type: ignore[operator]


async def test_broker_produce_consume_round_trip(kafka_bootstrap: str, topic_prefix: str) -> None:
    topic = f"{topic_prefix}roundtrip"
    await _create_topic(kafka_bootstrap, topic)
    await _produce(kafka_bootstrap, topic, b"hello")
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=kafka_bootstrap,
        group_id=f"g-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        fetch_max_wait_ms=50,
        # Tansu holds a first JoinGroup for about half the session timeout (5 s by default).
        session_timeout_ms=2000,
        heartbeat_interval_ms=500,
    )
    await consumer.start()
    try:
        message = await asyncio.wait_for(consumer.getone(), timeout=30)
    finally:
        await consumer.stop()
    assert message.value == b"hello"


def test_postgres_data_persists_across_restart(own_stack: EmbeddedStack) -> None:
    pg = own_stack.postgres
    pg.psql(
        "CREATE TABLE persist_check (v text); INSERT INTO persist_check VALUES ('kept')",
        database="postwire",
    )
    before = pg.pid
    pg.restart()
    assert pg.pid is not None and pg.pid != before
    assert pg.psql("SELECT v FROM persist_check", database="postwire") == "kept"


def test_postgres_recovers_committed_data_after_kill(own_stack: EmbeddedStack) -> None:
    pg = own_stack.postgres
    pg.psql(
        "CREATE TABLE crash_check (v int); INSERT INTO crash_check VALUES (7)", database="postwire"
    )
    old_pid = pg.pid
    assert old_pid is not None
    backends = procs.descendants(old_pid)
    pg.kill()
    assert pg.pid is None and not procs.pid_alive(old_pid)
    assert not [pid for pid in backends if procs.pid_alive(pid)]
    pg.restart()
    assert pg.psql("SELECT v FROM crash_check", database="postwire") == "7"


async def test_broker_restart_comes_back_empty(own_stack: EmbeddedStack) -> None:
    broker = own_stack.broker
    topic = f"gone-{uuid.uuid4().hex[:8]}"
    await _create_topic(broker.bootstrap, topic)
    await _produce(broker.bootstrap, topic, b"lost on restart")
    assert topic in await _topics(broker.bootstrap)
    port, old_pid = broker.port, broker.pid
    broker.restart()
    assert broker.port == port and broker.pid != old_pid
    assert topic not in await _topics(broker.bootstrap)


def test_starting_on_a_taken_port_names_the_port(own_stack: EmbeddedStack, tmp_path: Path) -> None:
    taken = own_stack.broker.port
    with pytest.raises(PortInUseError, match=f"port {taken} "):
        EmbeddedBroker(log_path=tmp_path / "b.log").start(taken)


def test_stop_leaves_no_process(tmp_path: Path) -> None:
    embedded = EmbeddedStack(base_dir=tmp_path / "stack")
    with embedded:
        pids = embedded.pids()
        assert len(pids) == 2
        tree = [pid for pid in pids for pid in [pid, *procs.descendants(pid)]]
        assert embedded.postgres.psql("SELECT 1") == "1"
    assert embedded.pids() == []
    for pid in pids:  # our direct children are reaped: the PID is gone entirely
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert not [pid for pid in tree if procs.pid_alive(pid)]


def test_dev_infra_prints_exports_refuses_a_second_run_and_stops_cleanly(tmp_path: Path) -> None:
    state = tmp_path / "dev"
    argv = [sys.executable, "-m", "cli.main", "dev", "infra", "--dir", str(state)]
    ports = ["--pg-port", str(free_port()), "--broker-port", str(free_port())]
    proc = subprocess.Popen(
        [*argv, *ports], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        output = read_until(proc, "export POSTWIRE_KAFKA_BOOTSTRAP=")
        assert "export POSTWIRE_DATABASE_URL=postgresql://postgres@127.0.0.1:" in output, output
        children = procs.descendants(proc.pid)
        assert len(children) >= 2

        second = subprocess.run([*argv, "--no-migrate"], capture_output=True, text=True, timeout=60)
        assert second.returncode == 1
        assert f"already running on {state}" in second.stderr
        assert f"(pid {proc.pid})" in second.stderr

        assert_stops_cleanly(proc, children, timeout_s=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_die_with_parent_arms_in_the_child_and_fires_when_the_parent_exits() -> None:
    child = ("import signal, sys, time; from deploy.embedded.procs import die_with_parent;"
             " die_with_parent(signal.SIGTERM); print('armed', flush=True); time.sleep(60)")
    # the intermediate shell starts the child in the background, waits until it is armed (so
    # arming did not kill it), prints its pid and exits: the child must then get SIGTERM
    script = (f'{shlex.quote(sys.executable)} -c {shlex.quote(child)} > "$1" & '
              'while ! grep -q armed "$1" 2>/dev/null; do sleep 0.05; done; echo $!')
    with tempfile.NamedTemporaryFile() as marker:
        result = subprocess.run(["sh", "-c", script, "sh", marker.name], capture_output=True,
                                text=True, timeout=60, check=True, cwd=Path(__file__).parents[2])
        pid = int(result.stdout.strip())
        deadline = time.monotonic() + 10
        while procs.pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not procs.pid_alive(pid), "the child outlived its parent"
