"""Prefixed, time-sortable identifiers (``evt_``, ``ep_``, ``dlv_``, ``att_``, ``rpl_`` + 26 chars).

The 26 characters are a ULID in Crockford base32: 48 bits of Unix milliseconds followed by
80 random bits. Within one process, ids made in the same millisecond are strictly increasing
(the random part is incremented), so sorting ids sorts by creation time.
"""

from __future__ import annotations

import base64
import os
import threading
import time

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_DECODE = {c: i for i, c in enumerate(_ALPHABET)}
PREFIXES = frozenset({"evt", "ep", "dlv", "att", "rpl", "job"})
_ID_LEN = 26


class _UlidGenerator:
    """Monotonic ULID source; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last_ms = -1
        self._last_rand = 0

    def next(self, now_ms: int | None = None) -> int:
        ms = int(time.time() * 1000) if now_ms is None else now_ms
        with self._lock:
            if ms <= self._last_ms:
                ms = self._last_ms
                rand = self._last_rand + 1
            else:
                rand = int.from_bytes(os.urandom(10), "big") >> 1  # leave room to increment
            self._last_ms, self._last_rand = ms, rand
        return (ms << 80) | (rand & ((1 << 80) - 1))


_GENERATOR = _UlidGenerator()


# RFC 4648 base32 and Crockford's alphabet map 5-bit groups in the same order, so one
# translation table turns the (C-speed) standard encoding into Crockford's.
_TO_CROCKFORD = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", _ALPHABET)


def _encode(value: int) -> str:
    """The 26-character Crockford base32 form of a 128-bit value (two leading zero bits).

    The 130 bits are placed at the top of 17 bytes (136 bits), so the first 26 standard base32
    characters are exactly its 5-bit groups, most significant first.
    """
    raw = base64.b32encode((value << 6).to_bytes(17, "big"))
    return raw[:_ID_LEN].decode("ascii").translate(_TO_CROCKFORD)


def new_id(prefix: str) -> str:
    """Return a fresh id such as ``evt_01JD...``; ``prefix`` must be one of :data:`PREFIXES`."""
    if prefix not in PREFIXES:
        raise ValueError(f"unknown id prefix {prefix!r}")
    return f"{prefix}_{_encode(_GENERATOR.next())}"


def lowest_id_at(prefix: str, unix_ms: int) -> str:
    """The smallest id of ``prefix`` made at or after ``unix_ms``: ``id >= lowest_id_at(...)``
    selects rows created since then through the primary key (ids sort by creation time)."""
    if prefix not in PREFIXES:
        raise ValueError(f"unknown id prefix {prefix!r}")
    return f"{prefix}_{_encode(max(0, unix_ms) << 80)}"


def is_valid_id(value: str, prefix: str) -> bool:
    """True when ``value`` is ``<prefix>_`` followed by 26 Crockford base32 characters."""
    head, sep, body = value.partition("_")
    return (
        sep == "_"
        and head == prefix
        and len(body) == _ID_LEN
        and all(c in _DECODE for c in body)
        and _DECODE[body[0]] <= 7
    )


def id_unix_ms(value: str) -> int | None:
    """The creation time (Unix milliseconds) encoded in an id's ULID; None when ``value`` is
    not ``<prefix>_`` + 26 Crockford base32 characters."""
    _, sep, body = value.partition("_")
    if sep != "_" or len(body) != _ID_LEN or any(c not in _DECODE for c in body[:10]) \
            or _DECODE[body[0]] > 7:  # a ULID's time is 48 bits: the first character is 0..7
        return None
    ms = 0
    for c in body[:10]:
        ms = (ms << 5) | _DECODE[c]
    return ms
