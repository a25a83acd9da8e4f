"""Replication factor against ``min.insync.replicas`` on a real 3-node Apache Kafka (its brokers
have ``min.insync.replicas`` 2).

``postwire topics`` refuses to create topics with replication factor 1 (one line, nothing
created) and creates them with 3; topics that exist with replication factor 1 (made by hand)
are refused by ``postwire topics --check`` and by a service at start, both with one line: with
``acks=all`` no write to them could ever be acknowledged.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from deploy.embedded.services import start_service
from tests.conftest import RealKafkaFactory, ServiceEnvFactory
from tests.support.dispatch import poll
from tests.support.topics import list_topics

POSTWIRE = str(Path(sys.executable).with_name("postwire"))
EXIT_CONFIG, EXIT_MISMATCH = 2, 1


def _topics(bootstrap: str, prefix: str, replication: int, *args: str
            ) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSTWIRE_")}
    env.update(POSTWIRE_KAFKA_BOOTSTRAP=bootstrap, POSTWIRE_TOPIC_PREFIX=prefix,
               POSTWIRE_KAFKA_PARTITIONS="2",
               POSTWIRE_KAFKA_REPLICATION_FACTOR=str(replication))
    return subprocess.run([POSTWIRE, "topics", *args], env=env, capture_output=True, text=True,
                          timeout=60, check=False)


async def _create(bootstrap: str, names: list[str], replication: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(n, num_partitions=2, replication_factor=replication)
                                   for n in names])
    finally:
        await admin.close()


async def test_replication_below_min_insync_is_refused_on_three_nodes(
        real_kafka: RealKafkaFactory, service_env: ServiceEnvFactory, tmp_path: Path) -> None:
    bootstrap = real_kafka(3).bootstrap

    refused = _topics(bootstrap, "low.", 1)
    assert refused.returncode == EXIT_CONFIG, refused.stderr
    assert refused.stderr.count("\n") == 1
    assert refused.stderr.startswith(
        "postwire topics: not creating Kafka topics low.deliveries, low.deadletter: "
        "POSTWIRE_KAFKA_REPLICATION_FACTOR is 1 but min.insync.replicas=2: no write"), \
        refused.stderr
    assert not {t for t in await list_topics(bootstrap) if t.startswith("low.")}

    created = _topics(bootstrap, "ok.", 3)
    assert created.returncode == 0, created.stderr
    # another node may learn of the new topics a moment later
    await poll(lambda: list_topics(bootstrap),
               lambda names: {"ok.deliveries", "ok.deadletter"} <= names, 15)
    # ... and the node `--check` asks may list them later still (metadata propagates)
    # (poll raises with the last answer when the check never passes)
    await poll(lambda: asyncio.to_thread(_topics, bootstrap, "ok.", 3, "--check"),
               lambda done: done.returncode == 0, 30, interval_s=1.0)

    await _create(bootstrap, ["hand.deliveries", "hand.deadletter"], replication=1)
    await poll(lambda: list_topics(bootstrap),
               lambda names: {"hand.deliveries", "hand.deadletter"} <= names, 15)
    # the node asked may not list or describe them yet ("missing", "run again": exit 1 too,
    # never a creation), until the cluster agrees
    checked = await poll(lambda: asyncio.to_thread(_topics, bootstrap, "hand.", 1, "--check"),
                         lambda done: "has replication factor" in done.stderr, 30,
                         interval_s=1.0)
    assert checked.returncode == EXIT_MISMATCH, checked.stderr
    assert ("postwire topics: Kafka topic hand.deliveries has replication factor 1 but "
            "min.insync.replicas=2: no write to it could ever be acknowledged") in checked.stderr

    # a real broker refuses session timeouts under group.min.session.timeout.ms (6 s)
    env = service_env(KAFKA_SESSION_TIMEOUT_MS="6000")
    env.update(POSTWIRE_KAFKA_BOOTSTRAP=bootstrap, POSTWIRE_TOPIC_PREFIX="hand.",
               POSTWIRE_KAFKA_PARTITIONS="2", POSTWIRE_KAFKA_REPLICATION_FACTOR="1")
    ingest = start_service("ingest", env, tmp_path / "ingest.log")
    try:
        await poll(lambda: asyncio.sleep(0, ingest.returncode), lambda rc: rc is not None, 60)
        assert ingest.returncode == EXIT_CONFIG
        # the topic's own setting, or (when the node asked does not list the topics yet) the
        # brokers' default refusing their creation: either way the same one-line refusal
        tail = ingest.log_tail()
        assert ("Kafka topic hand.deadletter has replication factor 1 but "
                "min.insync.replicas=2" in tail
                or "POSTWIRE_KAFKA_REPLICATION_FACTOR is 1 but min.insync.replicas=2" in tail), tail
    finally:
        ingest.stop()
