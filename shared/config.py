"""Settings read once from the environment, validated at start.

Every service reads the variables of README.md's configuration table through :func:`load_common`
plus its own extras. A bad or missing value raises :class:`ConfigError` whose message is the one
line the service prints before exiting.
"""

from __future__ import annotations

import ipaddress
import os
import re
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from shared.config_kafka import KafkaSecurity, load_kafka_security
from shared.core.api_keys import ApiKey, parse_api_key_entries
from shared.core.errors import ConfigError
from shared.core.retry import parse_schedule

T = TypeVar("T")

DEFAULT_RETRY_SCHEDULE = "0,5,300,1800,7200,18000,36000,36000"
_TOKEN_RE = re.compile(r"^[\x21-\x7e]{8,512}$")
_OPERATOR_RE = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")


def _get(env: Mapping[str, str], name: str, default: str | None) -> str:
    value = env.get(name)
    if value is None or value.strip() == "":
        if default is None:
            raise ConfigError(f"{name} is required but not set")
        return default
    return value.strip()


def _parsed(env: Mapping[str, str], name: str, default: str | None, parse: Callable[[str], T],
            what: str) -> T:
    raw = _get(env, name, default)
    try:
        return parse(raw)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{name}={raw!r} is not valid: expected {what}") from exc


def env_int(env: Mapping[str, str], name: str, default: int | None, lo: int, hi: int) -> int:
    """An integer in ``lo..hi``."""
    def parse(raw: str) -> int:
        value = int(raw)
        if not lo <= value <= hi:
            raise ValueError(raw)
        return value
    return _parsed(env, name, None if default is None else str(default), parse,
                   f"an integer from {lo} to {hi}")


def env_float(env: Mapping[str, str], name: str, default: float, lo: float, hi: float) -> float:
    """A number in ``lo..hi``."""
    def parse(raw: str) -> float:
        value = float(raw)
        if not lo <= value <= hi:
            raise ValueError(raw)
        return value
    return _parsed(env, name, str(default), parse, f"a number from {lo} to {hi}")


def env_bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    """``true``/``false`` (also 1/0, yes/no)."""
    def parse(raw: str) -> bool:
        lowered = raw.lower()
        if lowered in {"true", "1", "yes"}:
            return True
        if lowered in {"false", "0", "no"}:
            return False
        raise ValueError(raw)
    return _parsed(env, name, "true" if default else "false", parse, "true or false")


def env_str(env: Mapping[str, str], name: str, default: str | None) -> str:
    """A non-empty string."""
    return _get(env, name, default)


def _parse_dsn(raw: str) -> str:
    if not raw.startswith(("postgres://", "postgresql://")):
        raise ValueError(raw)
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(raw).query)
    for param in ("sslrootcert", "sslcert", "sslkey"):  # TLS files (docs/operations.md)
        for path in query.get(param, []):
            if not (os.path.isfile(path) and os.access(path, os.R_OK)):
                raise ConfigError(f"POSTWIRE_DATABASE_URL is not valid: {param}={path} is not "
                                  f"a readable file")
    return raw


def _parse_bootstrap(raw: str) -> str:
    for server in raw.split(","):
        host, sep, port = server.strip().rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(raw)
    return raw


def _parse_host(raw: str) -> str:
    if raw != "localhost":
        ipaddress.ip_address(raw)
    return raw


def _parse_prefix(raw: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9._-]{0,200}", raw):
        raise ValueError(raw)
    return raw


@dataclass(frozen=True)
class CommonSettings:
    """The variables every service reads (README.md, "Configuration")."""

    database_url: str
    kafka_bootstrap: str
    topic_prefix: str
    host: str
    retry_schedule: tuple[float, ...]
    delivery_timeout_s: float
    max_payload_bytes: int
    allow_private_targets: bool
    kafka_partitions: int
    db_pool_size: int
    kafka_replication_factor: int
    kafka_security: KafkaSecurity


def load_common(env: Mapping[str, str]) -> CommonSettings:
    """Read and validate the shared variables; raises ConfigError naming the bad one."""
    return CommonSettings(
        database_url=_parsed(env, "POSTWIRE_DATABASE_URL", None, _parse_dsn,
                             "a postgres:// or postgresql:// DSN"),
        kafka_bootstrap=_parsed(env, "POSTWIRE_KAFKA_BOOTSTRAP", None, _parse_bootstrap,
                                "comma-separated host:port pairs"),
        topic_prefix=_parsed(env, "POSTWIRE_TOPIC_PREFIX", "postwire.", _parse_prefix,
                             "letters, digits, '.', '_' or '-'"),
        host=_parsed(env, "POSTWIRE_HOST", "127.0.0.1", _parse_host, "an IP address"),
        retry_schedule=_parsed(env, "POSTWIRE_RETRY_SCHEDULE", DEFAULT_RETRY_SCHEDULE,
                               parse_schedule, "comma-separated non-negative seconds"),
        delivery_timeout_s=env_float(env, "POSTWIRE_DELIVERY_TIMEOUT_S", 15.0, 0.1, 300.0),
        max_payload_bytes=env_int(env, "POSTWIRE_MAX_PAYLOAD_BYTES", 262144, 1024,
                                  16 * 1024 * 1024),
        allow_private_targets=env_bool(env, "POSTWIRE_ALLOW_PRIVATE_TARGETS", False),
        kafka_partitions=env_int(env, "POSTWIRE_KAFKA_PARTITIONS", 16, 1, 1024),
        db_pool_size=env_int(env, "POSTWIRE_DB_POOL_SIZE", 10, 2, 200),
        kafka_replication_factor=env_int(env, "POSTWIRE_KAFKA_REPLICATION_FACTOR", 1, 1, 32),
        kafka_security=load_kafka_security(env),
    )


@dataclass(frozen=True)
class KafkaTopicSettings:
    """What ``postwire topics`` needs: where Kafka is, how to connect, the topics' layout."""

    bootstrap: str
    topic_prefix: str
    partitions: int
    replication_factor: int
    security: KafkaSecurity


def load_kafka_topic_settings(env: Mapping[str, str]) -> KafkaTopicSettings:
    """The Kafka variables of :func:`load_common` alone (no database needed); raises
    ConfigError naming the bad one."""
    return KafkaTopicSettings(
        bootstrap=_parsed(env, "POSTWIRE_KAFKA_BOOTSTRAP", None, _parse_bootstrap,
                          "comma-separated host:port pairs"),
        topic_prefix=_parsed(env, "POSTWIRE_TOPIC_PREFIX", "postwire.", _parse_prefix,
                             "letters, digits, '.', '_' or '-'"),
        partitions=env_int(env, "POSTWIRE_KAFKA_PARTITIONS", 16, 1, 1024),
        replication_factor=env_int(env, "POSTWIRE_KAFKA_REPLICATION_FACTOR", 1, 1, 32),
        security=load_kafka_security(env),
    )


def parse_scoped_api_keys(env: Mapping[str, str]) -> tuple[ApiKey, ...]:
    """``POSTWIRE_API_KEYS``: comma-separated entries ``KEY`` or ``ACCOUNT+ACCOUNT:KEY``, at
    least one (see :mod:`shared.core.api_keys`)."""
    return parse_api_key_entries(_get(env, "POSTWIRE_API_KEYS", None))


def parse_api_keys(env: Mapping[str, str]) -> tuple[str, ...]:
    """The secrets of ``POSTWIRE_API_KEYS`` (account scopes stripped), at least one."""
    return tuple(key.secret for key in parse_scoped_api_keys(env))


def parse_admin_tokens(env: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """``POSTWIRE_ADMIN_TOKENS``: comma-separated ``operator-name:token`` pairs, at least one."""
    raw = _get(env, "POSTWIRE_ADMIN_TOKENS", None)
    pairs: list[tuple[str, str]] = []
    for item in (p.strip() for p in raw.split(",") if p.strip()):
        name, sep, token = item.partition(":")
        if not sep or not _OPERATOR_RE.match(name) or not _TOKEN_RE.match(token):
            raise ConfigError("POSTWIRE_ADMIN_TOKENS is not valid: expected comma-separated "
                              "operator-name:token pairs (token of 8..512 printable characters)")
        pairs.append((name, token))
    if not pairs:
        raise ConfigError("POSTWIRE_ADMIN_TOKENS is required but not set")
    return tuple(pairs)


def refuse_shared_credentials(env: Mapping[str, str]) -> None:
    """Raise ConfigError when a string is both an ingest API key and an admin token: the
    contract keeps the two APIs' credentials apart, so one secret must not open both. Checked
    by each service at start when both variables are set (a malformed other variable is that
    other service's error, not this one's)."""
    if not env.get("POSTWIRE_API_KEYS") or not env.get("POSTWIRE_ADMIN_TOKENS"):
        return
    try:
        keys = set(parse_api_keys(env))
        tokens = {token for _, token in parse_admin_tokens(env)}
    except ConfigError:
        return
    if keys & tokens:
        raise ConfigError("POSTWIRE_API_KEYS and POSTWIRE_ADMIN_TOKENS share a secret: an "
                          "ingest key must never also be an admin token")
