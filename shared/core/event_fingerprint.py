"""Ingest's event fingerprint: what counts as "the same request" for an Idempotency-Key of
``POST /v1/events``. Pure.

A key is scoped to an account and lives 24 hours (:data:`WINDOW`). The request it protects is
identified by :func:`request_hash`, a SHA-256 over a *canonical* JSON rendering of the parsed
event (``account_id``, ``type``, ``data``, ``ordering_key``) with object keys sorted at every
level. Consequences, chosen on purpose and tested:

- The same JSON sent again with different whitespace or a different key order is the SAME
  request (a replay), as is ``"ordering_key": null`` versus no ``ordering_key`` at all. Clients
  that re-serialise a payload on retry are not punished with a 409.
- Values still compare exactly: ``1`` and ``1.0`` are different JSON numbers, ``"a"`` and
  ``"A"`` different strings, ``123456789012345678901234567890`` and
  ``123456789012345678901234567891`` different integers, ``0.1`` and
  ``0.10000000000000000001`` different numbers, so a real change of content is a conflict.
  ``1e2`` and ``100.0`` are the same number (and the first request's bytes are delivered).
- ``data`` is hashed as parsed by :mod:`shared.core.json_text` (exact integers; a Decimal
  where a float would round). When every number fits orjson exactly (integers in 64 bits,
  floats that are exact in shortest form: nearly every payload) the canonical rendering is
  orjson's with sorted keys, byte for byte the one used before exact payloads, so keys
  stored before an upgrade still match. Otherwise the exact rendering of
  :func:`canonical_json` is hashed under another domain.
- The hash does not depend on the transport: an event posted alone with an ``Idempotency-Key``
  header and the same event in a batch with that ``idempotency_key`` are the same request.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any

import orjson

from shared.core.errors import IdempotencyConflict, InvalidRequest

WINDOW = timedelta(hours=24)
MAX_KEY_LENGTH = 255
_KEY_RE = re.compile(r"[\x20-\x7e]{1,255}")
_HASH_DOMAIN = b"postwire.event.v1\x00"
_EXACT_HASH_DOMAIN = b"postwire.event.v2\x00"

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
    event = {"account_id": account_id, "type": event_type, "data": data,
             "ordering_key": ordering_key}
    try:
        canonical = orjson.dumps(event, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError:  # an integer beyond 64 bits, or a Decimal
        return hashlib.sha256(_EXACT_HASH_DOMAIN + canonical_json(event).encode()).digest()
    return hashlib.sha256(_HASH_DOMAIN + canonical).digest()


def _canonical_number(number: float | Decimal) -> str:
    """A non-integer number as ``<sign><digits>e<exponent>`` without trailing zeros: equal
    values render alike (``1e2``, ``100.0``), and never like an integer (no ``e`` there)."""
    sign, digits, exponent = (Decimal(repr(number)) if isinstance(number, float)
                              else number).as_tuple()
    text = "".join(map(str, digits)).lstrip("0")
    if not text:
        return "-0e0" if sign else "0e0"
    stripped = text.rstrip("0")
    power = (exponent if isinstance(exponent, int) else 0) + len(text) - len(stripped)
    return f"{'-' if sign else ''}{stripped}e{power}"


def canonical_json(value: Any) -> str:
    """An exact canonical JSON-like rendering: object keys sorted, strings as orjson writes
    them, integers in full, other numbers by :func:`_canonical_number`. For hashing only."""
    if isinstance(value, dict):
        return "{" + ",".join(f"{orjson.dumps(k).decode()}:{canonical_json(value[k])}"
                              for k in sorted(value)) + "}"
    if isinstance(value, list):
        return "[" + ",".join(canonical_json(v) for v in value) + "]"
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return orjson.dumps(value).decode()
    if isinstance(value, int):
        return str(value)
    return _canonical_number(value)


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
