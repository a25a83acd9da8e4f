"""The Kafka record that announces one delivery's work on the ``deliveries`` topic.

Written by ingest (fan-out) and the admin API (replays), read by the dispatcher. Pure: no I/O.

- Key (UTF-8): the endpoint id, for keyed and unkeyed deliveries alike (endpoint affinity).
  All of an endpoint's deliveries therefore share one partition, so one dispatcher (the group
  member that owns it) claims them and dispatchers do not queue on each other's
  ``endpoint_health`` row locks. Routing is an optimisation, not a guarantee: Postgres (the
  health-row lock, leases, generations) fences every claim, so a rebalance that briefly gives
  two members one endpoint, or a message still carrying the key of an earlier version
  (``endpoint_id|ordering_key`` or ``endpoint_id|delivery_id``), is handled correctly.
- Value: a compact JSON object ``{"delivery_id", "event_id", "endpoint_id", "account_id",
  "ordering_key", "sequence", "generation"}`` in that order (ingest renders the same bytes in
  SQL, see ``services.ingest.events_repo``). The message is only a pointer: Postgres holds the
  truth, and a consumer checks the delivery row (and its ``generation``) before acting, so a
  stale or duplicated message is harmless.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

_STR_FIELDS = ("delivery_id", "event_id", "endpoint_id", "account_id")
_FIELDS = frozenset((*_STR_FIELDS, "ordering_key", "sequence", "generation"))


@dataclass(frozen=True, slots=True)
class DeliveryMessage:
    """One unit of delivery work; ``sequence`` is set exactly when ``ordering_key`` is."""

    delivery_id: str
    event_id: str
    endpoint_id: str
    account_id: str
    ordering_key: str | None
    sequence: int | None
    generation: int = 0

    @property
    def key(self) -> bytes:
        """The Kafka key of this message (see the module docstring)."""
        return delivery_key(self.endpoint_id)


def delivery_key(endpoint_id: str) -> bytes:
    """The ``deliveries`` key of every delivery to ``endpoint_id``: the id as UTF-8. Ingest
    renders the same bytes in SQL (``services/ingest/events_repo.py``)."""
    return endpoint_id.encode()


def encode_delivery_message(message: DeliveryMessage) -> bytes:
    """The Kafka value: compact JSON with every field of :class:`DeliveryMessage`."""
    return orjson.dumps({
        "delivery_id": message.delivery_id,
        "event_id": message.event_id,
        "endpoint_id": message.endpoint_id,
        "account_id": message.account_id,
        "ordering_key": message.ordering_key,
        "sequence": message.sequence,
        "generation": message.generation,
    })


def _optional_int(value: Any, name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"delivery message field {name!r} must be an integer or null")
    return value


def decode_delivery_message(raw: bytes) -> DeliveryMessage:
    """Parse a value made by :func:`encode_delivery_message`.

    Raises ValueError for anything else: not JSON, not an object, a missing or mistyped field,
    an unknown field, or a sequence without an ordering key (and vice versa).
    """
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"delivery message is not JSON: {exc.msg}") from exc
    if not isinstance(data, dict):
        raise ValueError("delivery message must be a JSON object")
    if set(data) != _FIELDS:
        raise ValueError(f"delivery message fields must be exactly {sorted(_FIELDS)}")
    for name in _STR_FIELDS:
        if not isinstance(data[name], str) or not data[name]:
            raise ValueError(f"delivery message field {name!r} must be a non-empty string")
    ordering_key = data["ordering_key"]
    if ordering_key is not None and not isinstance(ordering_key, str):
        raise ValueError("delivery message field 'ordering_key' must be a string or null")
    sequence = _optional_int(data["sequence"], "sequence")
    generation = _optional_int(data["generation"], "generation")
    if (ordering_key is None) != (sequence is None):
        raise ValueError("delivery message needs a sequence exactly when it has an ordering key")
    if generation is None or generation < 0:
        raise ValueError("delivery message field 'generation' must be a non-negative integer")
    return DeliveryMessage(
        delivery_id=data["delivery_id"], event_id=data["event_id"],
        endpoint_id=data["endpoint_id"], account_id=data["account_id"],
        ordering_key=ordering_key, sequence=sequence, generation=generation,
    )
