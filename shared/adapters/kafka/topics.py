"""Topic names, their creation at start, and the check that existing topics match the settings.

Only the plain Kafka admin API is used, so Apache Kafka and Tansu both work. A topic whose
partition count differs from ``POSTWIRE_KAFKA_PARTITIONS`` would move keys to other partitions
(ordering), and one with a lower replication factor than ``POSTWIRE_KAFKA_REPLICATION_FACTOR``
is less durable than the operator asked for: both are :class:`TopicMismatch`, which stops a
service at start. ``postwire topics`` runs the same check as an operator step.

A topic whose replication factor is below its ``min.insync.replicas`` (a topic setting, by
default the brokers') can never acknowledge a produce with ``acks=all``, which every Postwire
producer uses: ingest would answer 202 while nothing reached Kafka. Such a topic is a
:class:`TopicMismatch` too (:func:`insync_problem`), and topics are not created with a
replication factor below the brokers' ``min.insync.replicas``. Brokers that do not answer
``DescribeConfigs`` (the embedded Tansu broker closes the connection) leave it unknown: not
checked.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaError

from shared.adapters.kafka.security import client_options
from shared.config_kafka import PLAINTEXT, KafkaSecurity
from shared.core.errors import ConfigError

DELIVERIES = "deliveries"
DEADLETTER = "deadletter"
LOGICAL_TOPICS = (DELIVERIES, DEADLETTER)
_TOPIC_EXISTS = 36
MIN_INSYNC = "min.insync.replicas"

log = logging.getLogger(__name__)


class KafkaUnreachable(ConfigError):
    """The broker did not answer in time or refused the connection or the credentials."""


class TopicMismatch(ConfigError):
    """An existing topic's partition count or replication factor differs from the settings;
    the service must not start (re-partitioning would break per-key ordering)."""


@dataclass(frozen=True)
class TopicState:
    """One Postwire topic as found (or created) on the broker."""

    name: str
    partitions: int
    replication_factor: int
    created: bool
    known: bool = True  # False: the broker did not describe it (yet); nothing to compare
    min_insync: int | None = None  # its min.insync.replicas; None: the broker did not say

    def problem(self, partitions: int, replication_factor: int) -> str | None:
        """Why this topic does not match the settings, or None when it does (or is unknown)."""
        if not self.known:
            return None
        if self.partitions != partitions:
            return (f"Kafka topic {self.name} has {self.partitions} partitions but "
                    f"POSTWIRE_KAFKA_PARTITIONS={partitions}")
        if self.replication_factor < replication_factor:
            return (f"Kafka topic {self.name} has replication factor {self.replication_factor} "
                    f"but POSTWIRE_KAFKA_REPLICATION_FACTOR={replication_factor}")
        return insync_problem(f"Kafka topic {self.name} has replication factor",
                              self.replication_factor, self.min_insync)


def insync_problem(subject: str, replication_factor: int, min_insync: int | None) -> str | None:
    """The rule: with ``acks=all`` a write needs ``min_insync`` replicas in sync, so a
    replication factor below it can never be acknowledged. Returns the one-line reason,
    starting with ``subject`` (followed by the factor), or None when the factor suffices or
    ``min_insync`` is unknown."""
    if min_insync is None or replication_factor >= min_insync:
        return None
    return (f"{subject} {replication_factor} but {MIN_INSYNC}={min_insync}: no write to it "
            f"could ever be acknowledged (Postwire produces with acks=all); use a replication "
            f"factor of at least {min_insync}")


def unreachable_message(bootstrap: str, security: KafkaSecurity, exc: BaseException) -> str:
    """The one line that says Kafka could not be used (and that SASL credentials may be why)."""
    credentials = (" or it refused POSTWIRE_KAFKA_SASL_USERNAME / POSTWIRE_KAFKA_SASL_PASSWORD"
                   if security.uses_sasl else "")
    return (f"POSTWIRE_KAFKA_BOOTSTRAP: cannot reach Kafka at {bootstrap}{credentials} "
            f"({exc!r})")


def topic_name(prefix: str, logical: str) -> str:
    """The physical topic for a logical one, e.g. ``postwire.deliveries``."""
    return f"{prefix}{logical}"


async def ensure_topics(bootstrap: str, prefix: str, partitions: int,
                        timeout_s: float = 15.0, *, replication_factor: int = 1,
                        security: KafkaSecurity = PLAINTEXT) -> list[TopicState]:
    """Create the missing Postwire topics and check the existing ones; returns what it found.

    Raises TopicMismatch when an existing topic differs from ``partitions`` /
    ``replication_factor``, ConfigError when the broker cannot be reached (or refuses the
    credentials) within ``timeout_s`` or refuses to create a topic."""
    states = await sync_topics(bootstrap, prefix, partitions, timeout_s,
                               replication_factor=replication_factor, security=security)
    for state in states:
        problem = state.problem(partitions, replication_factor)
        if problem is not None:
            raise TopicMismatch(problem)
    return states


async def sync_topics(bootstrap: str, prefix: str, partitions: int,
                      timeout_s: float = 15.0, *, replication_factor: int = 1,
                      security: KafkaSecurity = PLAINTEXT,
                      create: bool = True) -> list[TopicState]:
    """Create the missing Postwire topics and describe all of them, mismatches included.
    With ``create`` false nothing is created: a topic this broker does not know (another node
    of the cluster may know it first) is returned as not ``known``.

    Raises KafkaUnreachable when the broker cannot be reached (or refuses the credentials)
    within ``timeout_s``, ConfigError when it refuses to create a topic."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10000,
                                **client_options(security))
    try:
        async with asyncio.timeout(timeout_s):
            await admin.start()
            states = await _ensure(admin, prefix, partitions, replication_factor, create)
    except (KafkaError, OSError, TimeoutError) as exc:
        raise KafkaUnreachable(unreachable_message(bootstrap, security, exc)) from exc
    finally:
        await admin.close()
    return states


async def _ensure(admin: AIOKafkaAdminClient, prefix: str, partitions: int,
                  replication_factor: int, create: bool = True) -> list[TopicState]:
    existing = set(await admin.list_topics())
    wanted = [topic_name(prefix, t) for t in LOGICAL_TOPICS]
    missing = [t for t in wanted if t not in existing] if create else []
    created: list[str] = []
    broker_min_insync: int | None = None
    if missing:
        broker_min_insync = await _broker_min_insync(admin)
        refused = insync_problem("POSTWIRE_KAFKA_REPLICATION_FACTOR is", replication_factor,
                                 broker_min_insync)
        if refused is not None:
            raise TopicMismatch(f"not creating Kafka topics {', '.join(missing)}: {refused} "
                                f"(the brokers' default)")
        response = await admin.create_topics([
            NewTopic(t, num_partitions=partitions, replication_factor=replication_factor)
            for t in missing
        ])
        for name, code, message in _topic_errors(response):
            if code == 0:
                created.append(name)
            elif code != _TOPIC_EXISTS:  # exists: another process was first; check it below
                raise ConfigError(f"cannot create Kafka topic {name}: {message} ({code})")
        log.info("created topics %s", created)
    present = [t for t in wanted if t not in created]
    described = await _describe(admin, present)
    insync = await _topic_min_insync(admin, sorted(described))
    states = [TopicState(t, partitions, replication_factor, True, min_insync=broker_min_insync)
              for t in created]
    for name in present:
        layout = described.get(name)
        states.append(TopicState(name, *layout, created=False, min_insync=insync.get(name))
                      if layout is not None
                      else TopicState(name, 0, 0, created=False, known=False))
    return sorted(states, key=lambda s: s.name)


def _config_values(responses: list[Any], key: str = MIN_INSYNC) -> dict[str, int]:
    """resource name -> integer value of ``key`` from DescribeConfigs answers (resources
    answered with an error, or without the key, are left out)."""
    out: dict[str, int] = {}
    for response in responses:
        for resource in response.to_object().get("resources", []):
            if resource.get("error_code"):
                continue
            for entry in resource.get("config_entries") or []:
                if entry.get("config_names") == key and entry.get("config_value") is not None:
                    out[resource["resource_name"]] = int(entry["config_value"])
    return out


async def _broker_min_insync(admin: AIOKafkaAdminClient) -> int | None:
    """The brokers' default ``min.insync.replicas`` (the largest any broker says), or None
    when the broker does not answer DescribeConfigs."""
    try:
        brokers = (await admin.describe_cluster()).get("brokers") or []
        resources = [ConfigResource(ConfigResourceType.BROKER, str(b["node_id"]),
                                    {MIN_INSYNC: None}) for b in brokers]
        values = _config_values(await admin.describe_configs(resources)) if resources else {}
    except (KafkaError, OSError, ValueError) as exc:
        log.info("the broker did not describe its %s (%r); not checked", MIN_INSYNC, exc)
        return None
    return max(values.values(), default=None)


async def _topic_min_insync(admin: AIOKafkaAdminClient, names: list[str],
                            attempts: int = 10) -> dict[str, int]:
    """Each topic's effective ``min.insync.replicas``; a topic just created may not be
    described at once (UNKNOWN_TOPIC_OR_PARTITION), so this asks again (0.3 s apart). Topics
    the broker does not describe are left out (not checked)."""
    values: dict[str, int] = {}
    for attempt in range(attempts):
        pending = [n for n in names if n not in values]
        if not pending:
            break
        try:
            values.update(_config_values(await admin.describe_configs(
                [ConfigResource(ConfigResourceType.TOPIC, n, {MIN_INSYNC: None})
                 for n in pending])))
        except (KafkaError, OSError, ValueError) as exc:
            log.info("the broker did not describe %s of %s (%r); not checked", MIN_INSYNC,
                     pending, exc)
            break
        if attempt < attempts - 1 and any(n not in values for n in names):
            await asyncio.sleep(0.3)
    return values


async def _describe(admin: AIOKafkaAdminClient, names: list[str],
                    attempts: int = 10) -> dict[str, tuple[int, int]]:
    """Layouts of ``names``; a topic just created elsewhere may not be described at once, so
    this asks again (0.3 s apart) until every one has partitions. Missing ones stay missing."""
    layouts: dict[str, tuple[int, int]] = {}
    for attempt in range(attempts):
        if not names:
            break
        layouts = _layouts(await admin.describe_topics(names))
        if all(layouts.get(n, (0, 0))[0] > 0 for n in names):
            break
        if attempt < attempts - 1:
            await asyncio.sleep(0.3)
    return {n: layout for n, layout in layouts.items() if layout[0] > 0}


def _layouts(described: list[dict[str, Any]]) -> dict[str, tuple[int, int]]:
    """topic -> (partition count, smallest replica count) from a DescribeTopics answer."""
    out: dict[str, tuple[int, int]] = {}
    for topic in described:
        if topic.get("error_code"):
            continue
        parts = topic.get("partitions") or []
        replicas = [len(p.get("replicas") or []) for p in parts]
        out[topic["topic"]] = (len(parts), min(replicas) if replicas else 0)
    return out


def _topic_errors(response: object) -> list[tuple[str, int, str | None]]:
    errors = getattr(response, "topic_errors", [])
    out: list[tuple[str, int, str | None]] = []
    for item in errors:
        name, code = item[0], item[1]
        message = item[2] if len(item) > 2 else None
        out.append((name, code, message))
    return out
