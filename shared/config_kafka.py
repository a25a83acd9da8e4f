"""Kafka connection security and topic layout, read from the environment at start.

Managed Kafka services (MSK, Confluent Cloud, Aiven, Redpanda Cloud) need TLS and/or SASL; these
variables describe how to connect. Every inconsistency is a ConfigError whose message is one line
naming the variable:

- ``POSTWIRE_KAFKA_SECURITY_PROTOCOL``: ``PLAINTEXT`` (default), ``SSL``, ``SASL_PLAINTEXT`` or
  ``SASL_SSL``.
- ``POSTWIRE_KAFKA_SASL_MECHANISM``: ``PLAIN``, ``SCRAM-SHA-256`` or ``SCRAM-SHA-512``; required
  with a ``SASL_*`` protocol, refused with the others. ``POSTWIRE_KAFKA_SASL_USERNAME`` and
  ``POSTWIRE_KAFKA_SASL_PASSWORD`` are then required too.
- ``POSTWIRE_KAFKA_SSL_CA_FILE``, ``POSTWIRE_KAFKA_SSL_CERT_FILE``, ``POSTWIRE_KAFKA_SSL_KEY_FILE``
  (PEM files that must be readable; cert and key go together, for mutual TLS) and
  ``POSTWIRE_KAFKA_SSL_KEY_PASSWORD``: only with ``SSL`` or ``SASL_SSL``. Without a CA file the
  system's trust store is used.
- ``POSTWIRE_KAFKA_REPLICATION_FACTOR``: replication factor of the topics Postwire creates
  (default 1; 3 in production).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from shared.core.errors import ConfigError

PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
_FILE_VARS = ("POSTWIRE_KAFKA_SSL_CA_FILE", "POSTWIRE_KAFKA_SSL_CERT_FILE",
              "POSTWIRE_KAFKA_SSL_KEY_FILE")


@dataclass(frozen=True)
class KafkaSecurity:
    """How every Kafka client of a process authenticates and encrypts; immutable after start.

    The password fields are left out of ``repr`` so that a logged settings object never shows
    them."""

    protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: str | None = field(default=None, repr=False)
    ssl_ca_file: str | None = None
    ssl_cert_file: str | None = None
    ssl_key_file: str | None = None
    ssl_key_password: str | None = field(default=None, repr=False)

    @property
    def uses_tls(self) -> bool:
        """True for ``SSL`` and ``SASL_SSL``."""
        return self.protocol in ("SSL", "SASL_SSL")

    @property
    def uses_sasl(self) -> bool:
        """True for ``SASL_PLAINTEXT`` and ``SASL_SSL``."""
        return self.protocol.startswith("SASL_")


PLAINTEXT = KafkaSecurity()


def _opt(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name)
    if value is None or value.strip() == "":
        return None
    return value.strip()


def _choice(env: Mapping[str, str], name: str, choices: tuple[str, ...],
            default: str | None) -> str | None:
    value = _opt(env, name)
    if value is None:
        return default
    upper = value.upper()
    if upper not in choices:
        raise ConfigError(f"{name}={value!r} is not valid: expected one of {', '.join(choices)}")
    return upper


def _readable_file(env: Mapping[str, str], name: str) -> str | None:
    path = _opt(env, name)
    if path is not None and not (os.path.isfile(path) and os.access(path, os.R_OK)):
        raise ConfigError(f"{name}={path!r} is not valid: expected a readable file")
    return path


def _check_sasl(env: Mapping[str, str], protocol: str, mechanism: str | None) -> None:
    if protocol.startswith("SASL_"):
        if mechanism is None:
            raise ConfigError(f"POSTWIRE_KAFKA_SASL_MECHANISM is required with "
                              f"POSTWIRE_KAFKA_SECURITY_PROTOCOL={protocol}")
        for name in ("POSTWIRE_KAFKA_SASL_USERNAME", "POSTWIRE_KAFKA_SASL_PASSWORD"):
            if _opt(env, name) is None:
                raise ConfigError(f"{name} is required with POSTWIRE_KAFKA_SECURITY_PROTOCOL="
                                  f"{protocol}")
        return
    for name in ("POSTWIRE_KAFKA_SASL_MECHANISM", "POSTWIRE_KAFKA_SASL_USERNAME",
                 "POSTWIRE_KAFKA_SASL_PASSWORD"):
        if _opt(env, name) is not None:
            raise ConfigError(f"{name} is set but POSTWIRE_KAFKA_SECURITY_PROTOCOL={protocol} "
                              f"does not use SASL (use SASL_PLAINTEXT or SASL_SSL)")


def _check_tls(env: Mapping[str, str], protocol: str) -> None:
    if protocol in ("SSL", "SASL_SSL"):
        cert = _opt(env, "POSTWIRE_KAFKA_SSL_CERT_FILE")
        key = _opt(env, "POSTWIRE_KAFKA_SSL_KEY_FILE")
        if (cert is None) != (key is None):
            missing = "POSTWIRE_KAFKA_SSL_KEY_FILE" if key is None else \
                "POSTWIRE_KAFKA_SSL_CERT_FILE"
            raise ConfigError(f"{missing} is required: a client certificate and its key go "
                              f"together")
        return
    for name in (*_FILE_VARS, "POSTWIRE_KAFKA_SSL_KEY_PASSWORD"):
        if _opt(env, name) is not None:
            raise ConfigError(f"{name} is set but POSTWIRE_KAFKA_SECURITY_PROTOCOL={protocol} "
                              f"does not use TLS (use SSL or SASL_SSL)")


def load_kafka_security(env: Mapping[str, str]) -> KafkaSecurity:
    """Read and cross-check the Kafka security variables; raises ConfigError naming one."""
    protocol = _choice(env, "POSTWIRE_KAFKA_SECURITY_PROTOCOL", PROTOCOLS, "PLAINTEXT")
    assert protocol is not None
    mechanism = _choice(env, "POSTWIRE_KAFKA_SASL_MECHANISM", SASL_MECHANISMS, None)
    _check_sasl(env, protocol, mechanism)
    _check_tls(env, protocol)
    return KafkaSecurity(
        protocol=protocol,
        sasl_mechanism=mechanism,
        sasl_username=_opt(env, "POSTWIRE_KAFKA_SASL_USERNAME"),
        sasl_password=_opt(env, "POSTWIRE_KAFKA_SASL_PASSWORD"),
        ssl_ca_file=_readable_file(env, "POSTWIRE_KAFKA_SSL_CA_FILE"),
        ssl_cert_file=_readable_file(env, "POSTWIRE_KAFKA_SSL_CERT_FILE"),
        ssl_key_file=_readable_file(env, "POSTWIRE_KAFKA_SSL_KEY_FILE"),
        ssl_key_password=_opt(env, "POSTWIRE_KAFKA_SSL_KEY_PASSWORD"),
    )
