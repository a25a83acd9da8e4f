"""Topic names, their creation at start, and the check that existing topics match the settings.

Only the plain Kafka admin API is used, so Apache Kafka and Tansu both work. A topic whose
partition count differs from ``POSTWIRE_KAFKA_PARTITIONS`` would move keys to other partitions
(ordering), and one with a lower replication factor than ``POSTWIRE_KAFKA_REPLICATION_FACTOR``
is less durable than the operator asked for: both are :class:`TopicMismatch`, which stops a
service at start. ``postwire topics`` runs the same check as an operator step.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError

from shared.adapters.kafka.security import client_options
from shared.config_kafka import PLAINTEXT, KafkaSecurity
from shared.core.errors import ConfigError

DELIVERIES = "deliveries"
DEADLETTER = "deadletter"
LOGICAL_TOPICS = (DELIVERIES, DEADLETTER)
_TOPIC_EXISTS = 36

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
        return None


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
                      security: KafkaSecurity = PLAINTEXT) -> list[TopicState]:
    """Create the missing Postwire topics and describe all of them, mismatches included.

    Raises KafkaUnreachable when the broker cannot be reached (or refuses the credentials)
    within ``timeout_s``, ConfigError when it refuses to create a topic."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10000,
                                **client_options(security))
    try:
        async with asyncio.timeout(timeout_s):
            await admin.start()
            states = await _ensure(admin, prefix, partitions, replication_factor)
    except (KafkaError, OSError, TimeoutError) as exc:
        raise KafkaUnreachable(unreachable_message(bootstrap, security, exc)) from exc
    finally:
        await admin.close()
    return states


async def _ensure(admin: AIOKafkaAdminClient, prefix: str, partitions: int,
                  replication_factor: int) -> list[TopicState]:
    existing = set(await admin.list_topics())
    wanted = [topic_name(prefix, t) for t in LOGICAL_TOPICS]
    missing = [t for t in wanted if t not in existing]
    created: list[str] = []
    if missing:
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
    states = [TopicState(t, partitions, replication_factor, True) for t in created]
    for name in present:
        layout = described.get(name)
        states.append(TopicState(name, *layout, created=False) if layout is not None
                      else TopicState(name, 0, 0, created=False, known=False))
    return sorted(states, key=lambda s: s.name)


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
