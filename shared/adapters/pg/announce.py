"""Announcing deliveries: a delivery row becomes its ``deliveries`` topic record, and the record
is written to the outbox in the caller's transaction.

This is the one builder of that record in Python: the dispatcher's outcome writer (the next
delivery of an ordering key), its scheduler (due retries, expired leases, stale and lost
deliveries), the admin service's requeue and the endpoint test event
(:mod:`shared.endpoints.test_event`) all announce through it, so a change to the
message (:mod:`shared.core.delivery_message`) or its key reaches every announcer. Ingest writes
the same record from SQL inside its batch statement (``services/ingest/events_repo.py``), for
speed; an integration test checks that both write the same key and value bytes.

A row needs ``id``, ``event_id``, ``endpoint_id``, ``account_id``, ``ordering_key``,
``sequence`` and ``generation``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import asyncpg

from shared.adapters.kafka.publisher import Message
from shared.adapters.kafka.topics import DELIVERIES
from shared.adapters.pg.outbox import insert_outbox
from shared.core.delivery_message import DeliveryMessage, encode_delivery_message


def delivery_record(row: Mapping[str, Any]) -> Message:
    """The ``deliveries`` topic record that announces the delivery ``row``."""
    message = DeliveryMessage(
        delivery_id=row["id"], event_id=row["event_id"], endpoint_id=row["endpoint_id"],
        account_id=row["account_id"], ordering_key=row["ordering_key"],
        sequence=row["sequence"], generation=row["generation"],
    )
    return Message(DELIVERIES, message.key, encode_delivery_message(message))


async def announce(conn: asyncpg.Connection,
                   rows: Iterable[Mapping[str, Any]]) -> tuple[list[Message], list[int]]:
    """Write the records of ``rows`` (in that order) to the outbox inside the caller's
    transaction; returns them and their outbox ids, for the caller to publish after commit."""
    messages = [delivery_record(row) for row in rows]
    return messages, await insert_outbox(conn, messages)
