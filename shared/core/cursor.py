"""Opaque list cursors.

A cursor is the sort key of the last row a page returned, wrapped so that clients treat it as
opaque. Keyset pagination on an immutable unique key returns every row exactly once while rows
are inserted. The cursor also names the list it belongs to, so a cursor from one list is refused
by another rather than silently misread.
"""

from __future__ import annotations

import base64
import binascii

import orjson

from shared.core.errors import InvalidRequest


def encode_cursor(kind: str, key: list[str | int]) -> str:
    """Wrap a sort key for list ``kind`` into an opaque URL-safe string."""
    raw = orjson.dumps({"k": kind, "v": key})
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(kind: str, cursor: str, shape: tuple[type, ...]) -> list[str | int]:
    """Unwrap a cursor made by :func:`encode_cursor` for the same ``kind`` whose key has one
    part per entry of ``shape``, each of that type (``str`` or ``int``).

    Raises InvalidRequest (param ``cursor``) for anything else.
    """
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        data = orjson.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
    except (ValueError, binascii.Error, UnicodeEncodeError) as exc:
        raise InvalidRequest("cursor is not valid", param="cursor") from exc
    if not isinstance(data, dict) or data.get("k") != kind or not isinstance(data.get("v"), list):
        raise InvalidRequest("cursor is not valid for this list", param="cursor")
    key = data["v"]
    if len(key) != len(shape) or not all(
            type(part) is expected for part, expected in zip(key, shape, strict=True)):
        raise InvalidRequest("cursor is not valid", param="cursor")
    return list(key)
