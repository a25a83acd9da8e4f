"""``postwire topics``: create the Kafka topics, or verify that the existing ones match.

An operator step for production clusters where the services' own accounts may not create
topics: it reads the same variables as the services (``POSTWIRE_KAFKA_*``,
``POSTWIRE_TOPIC_PREFIX``), creates what is missing (unless ``--check``), and prints one row per
topic. A replication factor below ``min.insync.replicas`` is refused (nothing is created; an
existing topic like that does not match): with ``acks=all`` no write could be acknowledged.
Exit status: 0 every topic exists and matches, 1 a topic is missing (``--check``) or does
not match, 2 a bad setting (also a replication factor below the brokers'
``min.insync.replicas`` when creating), 5 Kafka unreachable or the credentials were refused.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from typing import TYPE_CHECKING

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from cli.tables import render_table
from shared.adapters.kafka.security import client_options
from shared.adapters.kafka.topics import (
    LOGICAL_TOPICS,
    KafkaUnreachable,
    TopicState,
    sync_topics,
    topic_name,
    unreachable_message,
)
from shared.config import KafkaTopicSettings, load_kafka_topic_settings
from shared.core.errors import ConfigError

if TYPE_CHECKING:
    from cli.main import Subparsers

EXIT_MISMATCH, EXIT_CONFIG, EXIT_UNREACHABLE = 1, 2, 5


def register(sub: Subparsers) -> None:
    """Add ``postwire topics``."""
    parser = sub.add_parser(
        "topics", help="create the Kafka topics, or verify they match the settings",
        description="Create the missing Postwire topics with POSTWIRE_KAFKA_PARTITIONS "
        "partitions and replication factor POSTWIRE_KAFKA_REPLICATION_FACTOR, then check that "
        "every topic matches. Uses POSTWIRE_KAFKA_BOOTSTRAP and the POSTWIRE_KAFKA_SECURITY_* "
        "/ SASL_* / SSL_* variables, like the services. A replication factor below the "
        "topic's or brokers' min.insync.replicas is refused (no write could be acknowledged).",
        epilog="exit status: 0 all topics match, 1 missing (--check) or mismatched, "
        "2 bad setting (or a replication factor below the brokers' min.insync.replicas), "
        "5 Kafka unreachable or credentials refused")
    parser.add_argument("--check", action="store_true",
                        help="only verify: create nothing, exit 1 when a topic is missing")
    parser.add_argument("--json", action="store_true", help="print JSON for scripts")
    parser.set_defaults(handler=cmd_topics)


async def _existing_only(settings: KafkaTopicSettings) -> list[TopicState] | None:
    """With ``--check``: the topics if all exist, None when one is missing (nothing created)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap, request_timeout_ms=10000,
                                **client_options(settings.security))
    try:
        async with asyncio.timeout(15):
            await admin.start()
            names = set(await admin.list_topics())
    except (KafkaError, OSError, TimeoutError) as exc:
        raise KafkaUnreachable(unreachable_message(settings.bootstrap, settings.security,
                                                   exc)) from exc
    finally:
        await admin.close()
    wanted = {topic_name(settings.topic_prefix, t) for t in LOGICAL_TOPICS}
    # Describe without creating: the node answering next may not know the topics yet (a
    # cluster's metadata propagates), and --check must never create or refuse to create.
    return None if wanted - names else await _sync(settings, create=False)


async def _sync(settings: KafkaTopicSettings, create: bool = True) -> list[TopicState]:
    return await sync_topics(settings.bootstrap, settings.topic_prefix, settings.partitions,
                             replication_factor=settings.replication_factor,
                             security=settings.security, create=create)


def cmd_topics(args: argparse.Namespace) -> int:
    """Create or verify the topics; prints a table (or JSON) and returns the exit status."""
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)  # our one line says it all
    try:
        settings = load_kafka_topic_settings(os.environ)
    except ConfigError as exc:
        print(f"postwire topics: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        states = asyncio.run(_existing_only(settings) if args.check else _sync(settings))
    except KafkaUnreachable as exc:
        print(f"postwire topics: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    except ConfigError as exc:
        print(f"postwire topics: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if states is None:
        print("postwire topics: a Postwire topic is missing; run `postwire topics` without "
              "--check to create it", file=sys.stderr)
        return EXIT_MISMATCH
    problems = {s.name: s.problem(settings.partitions, settings.replication_factor)
                if s.known else f"Kafka topic {s.name} exists but the broker does not describe "
                f"it yet; run `postwire topics` again" for s in states}
    _print(states, problems, args.json)
    bad = [p for p in problems.values() if p is not None]
    for problem in bad:
        print(f"postwire topics: {problem}", file=sys.stderr)
    return EXIT_MISMATCH if bad else 0


def _print(states: list[TopicState], problems: dict[str, str | None], as_json: bool) -> None:
    if as_json:
        print(json.dumps([{"topic": s.name, "partitions": s.partitions,
                           "replication_factor": s.replication_factor, "created": s.created,
                           "problem": problems[s.name]} for s in states], indent=2))
        return
    print(render_table(
        ["TOPIC", "PARTITIONS", "REPLICATION", "STATUS"],
        [[s.name, str(s.partitions), str(s.replication_factor),
          "created" if s.created else "unknown" if not s.known
          else ("MISMATCH" if problems[s.name] else "ok")]
         for s in states]))
