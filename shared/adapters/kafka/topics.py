"""Topic names and their creation at start.

Only the plain Kafka admin API is used, so Apache Kafka and Tansu both work.
"""

from __future__ import annotations

import asyncio
import logging

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError

from shared.core.errors import ConfigError

DELIVERIES = "deliveries"
DEADLETTER = "deadletter"
LOGICAL_TOPICS = (DELIVERIES, DEADLETTER)
_TOPIC_EXISTS = 36

log = logging.getLogger(__name__)


def topic_name(prefix: str, logical: str) -> str:
    """The physical topic for a logical one, e.g. ``postwire.deliveries``."""
    return f"{prefix}{logical}"


async def ensure_topics(bootstrap: str, prefix: str, partitions: int,
                        timeout_s: float = 15.0) -> None:
    """Create the missing Postwire topics; existing ones are left as they are.

    Raises ConfigError when the broker cannot be reached within ``timeout_s``.
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10000)
    try:
        async with asyncio.timeout(timeout_s):
            await admin.start()
            existing = set(await admin.list_topics())
            wanted = [topic_name(prefix, t) for t in LOGICAL_TOPICS]
            missing = [t for t in wanted if t not in existing]
            if missing:
                response = await admin.create_topics(
                    [NewTopic(t, num_partitions=partitions, replication_factor=1) for t in missing]
                )
                for name, code, message in _topic_errors(response):
                    if code not in (0, _TOPIC_EXISTS):
                        raise ConfigError(f"cannot create Kafka topic {name}: {message} ({code})")
                log.info("created topics %s", missing)
    except (KafkaError, OSError, TimeoutError) as exc:
        raise ConfigError(
            f"POSTWIRE_KAFKA_BOOTSTRAP: cannot reach Kafka at {bootstrap} ({exc!r})"
        ) from exc
    finally:
        await admin.close()


def _topic_errors(response: object) -> list[tuple[str, int, str | None]]:
    errors = getattr(response, "topic_errors", [])
    out: list[tuple[str, int, str | None]] = []
    for item in errors:
        name, code = item[0], item[1]
        message = item[2] if len(item) > 2 else None
        out.append((name, code, message))
    return out
