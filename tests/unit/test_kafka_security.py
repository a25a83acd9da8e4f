"""Kafka security settings: every combination validated at start with one line naming the
variable, and translated into the aiokafka options every client uses."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from shared.adapters.kafka.security import client_options
from shared.adapters.kafka.topics import TopicState
from shared.config import load_common, load_kafka_topic_settings
from shared.config_kafka import load_kafka_security
from shared.core.errors import ConfigError

BASE = {"POSTWIRE_DATABASE_URL": "postgresql://u@127.0.0.1:5432/db",
        "POSTWIRE_KAFKA_BOOTSTRAP": "127.0.0.1:9092"}
SASL = {"POSTWIRE_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "POSTWIRE_KAFKA_SASL_MECHANISM": "scram-sha-512",
        "POSTWIRE_KAFKA_SASL_USERNAME": "svc", "POSTWIRE_KAFKA_SASL_PASSWORD": "pw-123"}


def test_defaults_are_plaintext_and_replication_factor_one() -> None:
    common = load_common(BASE)
    assert common.kafka_security.protocol == "PLAINTEXT"
    assert common.kafka_replication_factor == 1
    assert client_options(common.kafka_security) == {"security_protocol": "PLAINTEXT"}


def test_sasl_ssl_with_scram_builds_a_verifying_tls_context() -> None:
    security = load_kafka_security(SASL)
    assert security.sasl_mechanism == "SCRAM-SHA-512"
    assert "pw-123" not in repr(security)
    options = client_options(security)
    assert options["security_protocol"] == "SASL_SSL"
    assert (options["sasl_mechanism"], options["sasl_plain_username"],
            options["sasl_plain_password"]) == ("SCRAM-SHA-512", "svc", "pw-123")
    context = options["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname


@pytest.mark.parametrize("env, line", [
    ({"POSTWIRE_KAFKA_SECURITY_PROTOCOL": "TLS"},
     "POSTWIRE_KAFKA_SECURITY_PROTOCOL='TLS' is not valid: expected one of PLAINTEXT, SSL, "
     "SASL_PLAINTEXT, SASL_SSL"),
    ({**SASL, "POSTWIRE_KAFKA_SASL_MECHANISM": "GSSAPI"},
     "POSTWIRE_KAFKA_SASL_MECHANISM='GSSAPI' is not valid: expected one of PLAIN, "
     "SCRAM-SHA-256, SCRAM-SHA-512"),
    ({**SASL, "POSTWIRE_KAFKA_SASL_MECHANISM": ""},
     "POSTWIRE_KAFKA_SASL_MECHANISM is required with POSTWIRE_KAFKA_SECURITY_PROTOCOL=SASL_SSL"),
    ({**SASL, "POSTWIRE_KAFKA_SASL_PASSWORD": " "},
     "POSTWIRE_KAFKA_SASL_PASSWORD is required with POSTWIRE_KAFKA_SECURITY_PROTOCOL=SASL_SSL"),
    ({"POSTWIRE_KAFKA_SASL_USERNAME": "svc"},
     "POSTWIRE_KAFKA_SASL_USERNAME is set but POSTWIRE_KAFKA_SECURITY_PROTOCOL=PLAINTEXT does "
     "not use SASL (use SASL_PLAINTEXT or SASL_SSL)"),
    ({"POSTWIRE_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "POSTWIRE_KAFKA_SASL_MECHANISM":
      "PLAIN", "POSTWIRE_KAFKA_SASL_USERNAME": "u", "POSTWIRE_KAFKA_SASL_PASSWORD": "p",
      "POSTWIRE_KAFKA_SSL_CA_FILE": "/etc/hosts"},
     "POSTWIRE_KAFKA_SSL_CA_FILE is set but POSTWIRE_KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT "
     "does not use TLS (use SSL or SASL_SSL)"),
    ({"POSTWIRE_KAFKA_SECURITY_PROTOCOL": "SSL", "POSTWIRE_KAFKA_SSL_CA_FILE": "/nonexistent"},
     "POSTWIRE_KAFKA_SSL_CA_FILE='/nonexistent' is not valid: expected a readable file"),
    ({"POSTWIRE_KAFKA_SECURITY_PROTOCOL": "SSL", "POSTWIRE_KAFKA_SSL_CERT_FILE": "/etc/hosts"},
     "POSTWIRE_KAFKA_SSL_KEY_FILE is required: a client certificate and its key go together"),
])
def test_bad_combinations_name_the_variable(env: dict[str, str], line: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_kafka_security(env)
    assert str(caught.value) == line
    with pytest.raises(ConfigError) as through_common:
        load_common({**BASE, **env})
    assert str(through_common.value) == line


def test_unloadable_tls_files_are_refused_with_the_variable(tmp_path: Path) -> None:
    not_pem = tmp_path / "ca.pem"
    not_pem.write_text("this is not a certificate\n")
    security = load_kafka_security({"POSTWIRE_KAFKA_SECURITY_PROTOCOL": "SSL",
                                    "POSTWIRE_KAFKA_SSL_CA_FILE": str(not_pem)})
    with pytest.raises(ConfigError, match=r"^POSTWIRE_KAFKA_SSL_CA_FILE="):
        client_options(security)
    key_pair = load_kafka_security({"POSTWIRE_KAFKA_SECURITY_PROTOCOL": "SSL",
                                    "POSTWIRE_KAFKA_SSL_CERT_FILE": str(not_pem),
                                    "POSTWIRE_KAFKA_SSL_KEY_FILE": str(not_pem)})
    with pytest.raises(ConfigError, match=r"^POSTWIRE_KAFKA_SSL_CERT_FILE="):
        client_options(key_pair)


def test_topic_settings_need_no_database_and_bound_the_replication_factor() -> None:
    topics = load_kafka_topic_settings({"POSTWIRE_KAFKA_BOOTSTRAP": "k1:9092,k2:9092",
                                        "POSTWIRE_KAFKA_REPLICATION_FACTOR": "3",
                                        "POSTWIRE_KAFKA_PARTITIONS": "32"})
    assert (topics.partitions, topics.replication_factor) == (32, 3)
    with pytest.raises(ConfigError, match=r"^POSTWIRE_KAFKA_REPLICATION_FACTOR='0' is not valid"):
        load_kafka_topic_settings({"POSTWIRE_KAFKA_BOOTSTRAP": "k:9092",
                                   "POSTWIRE_KAFKA_REPLICATION_FACTOR": "0"})


def test_topic_mismatch_rules() -> None:
    topic = TopicState("postwire.deliveries", partitions=16, replication_factor=3, created=False)
    assert topic.problem(16, 3) is None
    assert topic.problem(16, 1) is None  # more durable than asked is fine
    assert topic.problem(32, 3) == ("Kafka topic postwire.deliveries has 16 partitions but "
                                    "POSTWIRE_KAFKA_PARTITIONS=32")
    assert topic.problem(16, 5) == ("Kafka topic postwire.deliveries has replication factor 3 "
                                    "but POSTWIRE_KAFKA_REPLICATION_FACTOR=5")


def test_database_url_tls_files_are_checked_at_start(tmp_path: Path) -> None:
    ca = tmp_path / "ca.crt"
    ca.write_text("pem\n")
    dsn = "postgresql://u:secret-pw@db:5432/p?sslmode=verify-full&sslrootcert="
    assert load_common({**BASE, "POSTWIRE_DATABASE_URL": f"{dsn}{ca}"}).database_url.endswith(
        str(ca))
    with pytest.raises(ConfigError) as caught:
        load_common({**BASE, "POSTWIRE_DATABASE_URL": f"{dsn}{tmp_path}/missing.crt"})
    assert str(caught.value) == (f"POSTWIRE_DATABASE_URL is not valid: sslrootcert="
                                 f"{tmp_path}/missing.crt is not a readable file")
    assert "secret-pw" not in str(caught.value)
