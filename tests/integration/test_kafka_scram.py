"""Postwire against real Apache Kafka over SASL_PLAINTEXT with SCRAM users (issue 11, item 3).

One broker (``tests.support.kafka_scram``) for the module, a SCRAM user created with
``kafka-configs.sh``; then: ``postwire topics`` creates, verifies and reports mismatches, wrong
credentials are refused with one line, SASL_SSL verifies the broker's certificate against the
configured CA, a service refuses to start when the topics differ from its settings, and ingest +
dispatcher deliver an event with SCRAM-SHA-256 end to end.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from deploy.embedded.services import start_service
from tests.support.dispatch import FAST_ENV, poll
from tests.support.kafka_scram import ScramKafka
from tests.support.receiver import Receiver

USER, PASSWORD = "postwire-svc", "scram-secret-1"
PARTITIONS = "4"
POSTWIRE = str(Path(sys.executable).with_name("postwire"))


@pytest.fixture(scope="module")
def scram_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ScramKafka]:
    broker = ScramKafka(state_dir=tmp_path_factory.mktemp("kafka-scram"))
    try:
        broker.start()
        broker.add_user(USER, PASSWORD)
        yield broker
    finally:
        broker.stop()


def _kafka_env(broker: ScramKafka, prefix: str, mechanism: str = "SCRAM-SHA-512",
               password: str = PASSWORD, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSTWIRE_")}
    env.update({
        "POSTWIRE_KAFKA_BOOTSTRAP": broker.sasl_bootstrap, "POSTWIRE_TOPIC_PREFIX": prefix,
        "POSTWIRE_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "POSTWIRE_KAFKA_SASL_MECHANISM": mechanism, "POSTWIRE_KAFKA_SASL_USERNAME": USER,
        "POSTWIRE_KAFKA_SASL_PASSWORD": password, "POSTWIRE_KAFKA_PARTITIONS": PARTITIONS,
    })
    env.update(extra)
    return env


def _topics(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([POSTWIRE, "topics", *args], env=env, capture_output=True, text=True,
                          timeout=60, check=False)


def test_topics_command_creates_verifies_and_reports_mismatches(
        scram_kafka: ScramKafka, topic_prefix: str) -> None:
    prefix = f"cli{topic_prefix}"
    env = _kafka_env(scram_kafka, prefix)
    check_first = _topics(env, "--check")
    assert check_first.returncode == 1 and "missing" in check_first.stderr
    created = _topics(env)
    assert created.returncode == 0, created.stderr
    assert created.stdout.count("created") == 2, created.stdout
    again = _topics(env)
    assert again.returncode == 0 and again.stdout.count(" ok") == 2, again.stdout
    assert _topics(env, "--check").returncode == 0
    more_partitions = _topics({**env, "POSTWIRE_KAFKA_PARTITIONS": "8"}, "--check")
    assert more_partitions.returncode == 1
    assert (f"Kafka topic {prefix}deadletter has 4 partitions but POSTWIRE_KAFKA_PARTITIONS=8"
            in more_partitions.stderr)
    more_replicas = _topics({**env, "POSTWIRE_KAFKA_REPLICATION_FACTOR": "3"})
    assert more_replicas.returncode == 1
    assert "replication factor 1 but POSTWIRE_KAFKA_REPLICATION_FACTOR=3" in more_replicas.stderr


def test_wrong_password_and_bad_settings_are_one_line(
        scram_kafka: ScramKafka, topic_prefix: str) -> None:
    refused = _topics(_kafka_env(scram_kafka, topic_prefix, password="not-the-password"))
    assert refused.returncode == 5
    assert refused.stderr.startswith("postwire topics: POSTWIRE_KAFKA_BOOTSTRAP: cannot reach")
    no_mechanism = _topics({**_kafka_env(scram_kafka, topic_prefix),
                            "POSTWIRE_KAFKA_SASL_MECHANISM": ""})
    assert no_mechanism.returncode == 2
    assert no_mechanism.stderr.strip().splitlines() == [
        "postwire topics: POSTWIRE_KAFKA_SASL_MECHANISM is required with "
        "POSTWIRE_KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT"]


def test_sasl_ssl_verifies_the_broker_certificate(scram_kafka: ScramKafka, topic_prefix: str,
                                                  tmp_path: Path) -> None:
    tls = {"POSTWIRE_KAFKA_BOOTSTRAP": scram_kafka.sasl_ssl_bootstrap,
           "POSTWIRE_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
           "POSTWIRE_KAFKA_SSL_CA_FILE": str(scram_kafka.ca_file)}
    env = {**_kafka_env(scram_kafka, f"tls{topic_prefix}"), **tls}
    created = _topics(env)
    assert created.returncode == 0, created.stderr
    assert created.stdout.count("created") == 2, created.stdout
    other_ca = tmp_path / "other-ca.crt"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-keyout", str(tmp_path / "other.key"),
                    "-out", str(other_ca)], check=True, capture_output=True, timeout=60)
    untrusted = _topics({**env, "POSTWIRE_KAFKA_SSL_CA_FILE": str(other_ca)}, "--check")
    assert untrusted.returncode == 5, untrusted.stderr
    assert len(untrusted.stderr.strip().splitlines()) == 1
    system_store = _topics({**env, "POSTWIRE_KAFKA_SSL_CA_FILE": ""}, "--check")
    assert system_store.returncode == 5  # a self-signed broker is not in the system store


@pytest_asyncio.fixture
async def rx() -> AsyncIterator[Receiver]:
    async with Receiver() as receiver:
        yield receiver


async def test_services_deliver_over_scram_and_refuse_mismatched_topics(
        scram_kafka: ScramKafka, service_env: Any, rx: Receiver, tmp_path: Path) -> None:
    # a real broker refuses session timeouts under group.min.session.timeout.ms (6 s)
    base_env = service_env(**{**FAST_ENV, "KAFKA_SESSION_TIMEOUT_MS": "6000"})
    kafka = _kafka_env(scram_kafka, base_env["POSTWIRE_TOPIC_PREFIX"],
                       mechanism="SCRAM-SHA-256")
    env = {**base_env, **{k: v for k, v in kafka.items() if k.startswith("POSTWIRE_")}}
    ingest = start_service("ingest", env, tmp_path / "ingest.log")
    dispatcher = start_service("dispatcher", env, tmp_path / "dispatcher.log")
    try:
        await ingest.wait_healthy_async(timeout_s=60)
        await dispatcher.wait_healthy_async(timeout_s=60)
        auth = {"Authorization": "Bearer test-key"}
        async with aiohttp.ClientSession(headers=auth) as http:
            async with http.post(f"{ingest.base_url}/v1/endpoints", json={
                    "account_id": "acct_scram", "url": rx.url("/scram")}) as response:
                assert response.status == 201
            async with http.post(f"{ingest.base_url}/v1/events", json={
                    "account_id": "acct_scram", "type": "invoice.paid",
                    "data": {"over": "scram"}}) as response:
                assert response.status == 202
                event = await response.json()
        await rx.wait_for(lambda: len(rx.requests_for("/scram")) == 1, timeout_s=30)
        assert rx.requests_for("/scram")[0].json()["id"] == event["id"]
    finally:
        dispatcher.stop()
        ingest.stop()

    mismatched = start_service("ingest", {**env, "POSTWIRE_KAFKA_PARTITIONS": "6"},
                               tmp_path / "ingest-mismatch.log")
    try:
        await poll(lambda: asyncio.sleep(0, mismatched.returncode), lambda rc: rc is not None,
                   30)
        assert mismatched.returncode == 2
        assert "has 4 partitions but POSTWIRE_KAFKA_PARTITIONS=6" in mismatched.log_tail()
    finally:
        mismatched.stop()
