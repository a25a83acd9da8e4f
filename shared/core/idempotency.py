"""Idempotency keys for ``POST /v1/events``: what counts as "the same request". Pure.

A key is scoped to an account and lives 24 hours (:data:`WINDOW`). The request it protects is
identified by :func:`request_hash`, a SHA-256 over a *canonical* JSON rendering of the parsed
event (``account_id``, ``type``, ``data``, ``ordering_key``) with object keys sorted at every
level. Consequences, chosen on purpose and tested:

- The same JSON sent again with different whitespace or a different key order is the SAME
  request (a replay), as is ``"ordering_key": null`` versus no ``ordering_key`` at all. Clients
  that re-serialise a payload on retry are not punished with a 409.
- Values still compare exactly: ``1`` and ``1.0`` are different JSON numbers, ``"a"`` and
  ``"A"`` different strings, so a real change of content is a conflict.
- The hash does not depend on the transport: an event posted alone with an ``Idempotency-Key``
  header and the same event in a batch with that ``idempotency_key`` are the same request.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import orjson

from shared.core.errors import IdempotencyConflict, InvalidRequest

WINDOW = timedelta(hours=24)
MAX_KEY_LENGTH = 255
_KEY_RE = re.compile(r"[\x20-\x7e]{1,255}")
_HASH_DOMAIN = b"postwire.event.v1\x00"

AccountKey = tuple[str, str]


def check_idempotency_key(value: object, param: str) -> str:
    """``value`` if it is 1..255 printable ASCII characters; InvalidRequest naming ``param``."""
    if not isinstance(value, str) or not _KEY_RE.fullmatch(value):
        raise InvalidRequest(
            f"{param} must be 1..{MAX_KEY_LENGTH} printable ASCII characters", param=param)
    return value


def request_hash(account_id: str, event_type: str, data: dict[str, Any],
                 ordering_key: str | None) -> bytes:
    """SHA-256 of the canonical event (see the module docstring); 32 bytes."""
    canonical = orjson.dumps(
        {"account_id": account_id, "type": event_type, "data": data,
         "ordering_key": ordering_key},
        option=orjson.OPT_SORT_KEYS,
    )
    return hashlib.sha256(_HASH_DOMAIN + canonical).digest()


@dataclass(frozen=True, slots=True)
class StoredKey:
    """What the store remembers for a key: the request's hash and the exact 202 body."""

    request_hash: bytes
    response: bytes


def replay(stored: StoredKey, incoming_hash: bytes, param: str = "Idempotency-Key") -> bytes:
    """The stored response to answer again when ``incoming_hash`` matches.

    Raises IdempotencyConflict (409, naming ``param``) when the key was used for a different
    request.
    """
    if stored.request_hash != incoming_hash:
        raise IdempotencyConflict(
            "this idempotency key was already used with a different request body", param=param)
    return stored.response


def first_uses(keys: Sequence[AccountKey | None]) -> dict[AccountKey, int]:
    """For each distinct (account_id, key), the index of its first use in ``keys``.

    Later uses of the same key in one group commit are answered from the first one's outcome,
    never inserted twice.
    """
    first: dict[AccountKey, int] = {}
    for index, key in enumerate(keys):
        if key is not None and key not in first:
            first[key] = index
    return first
