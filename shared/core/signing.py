"""Standard Webhooks signing (https://www.standardwebhooks.com).

A secret is ``whsec_`` followed by the standard base64 of 24..64 random bytes; the decoded bytes
are the HMAC key. A signature is ``v1,<base64 HMAC-SHA256 of "<id>.<timestamp>.<body>">``; during
a secret rotation the ``webhook-signature`` header carries one space-separated entry per active
secret, the current secret first. Every function here is pure: randomness is passed in.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
from collections.abc import Callable, Sequence
from datetime import datetime

from shared.core.version import POSTWIRE_VERSION

SECRET_PREFIX = "whsec_"
MIN_SECRET_BYTES = 24
MAX_SECRET_BYTES = 64
GENERATED_SECRET_BYTES = 32
USER_AGENT = f"Postwire/{POSTWIRE_VERSION}"

_BASE64_RE = re.compile(r"[A-Za-z0-9+/]+={0,2}")
_MAX_ENCODED_LEN = 4 * ((MAX_SECRET_BYTES + 2) // 3)


def parse_secret(secret: str) -> bytes:
    """Return the HMAC key of a ``whsec_`` secret.

    Accepts the standard base64 alphabet, with or without ``=`` padding, decoding to
    24..64 bytes. Raises ValueError with a message fit for an API client otherwise.
    """
    if not isinstance(secret, str) or not secret.startswith(SECRET_PREFIX):
        raise ValueError(f"secret must start with {SECRET_PREFIX!r}")
    encoded = secret[len(SECRET_PREFIX):]
    if len(encoded) > _MAX_ENCODED_LEN or not _BASE64_RE.fullmatch(encoded):
        raise ValueError(
            f"secret must be {SECRET_PREFIX!r} followed by the base64 of "
            f"{MIN_SECRET_BYTES}..{MAX_SECRET_BYTES} bytes"
        )
    unpadded = encoded.rstrip("=")
    try:
        key = base64.b64decode(unpadded + "=" * (-len(unpadded) % 4), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"secret after {SECRET_PREFIX!r} is not valid base64") from exc
    if not MIN_SECRET_BYTES <= len(key) <= MAX_SECRET_BYTES:
        raise ValueError(
            f"secret must encode {MIN_SECRET_BYTES}..{MAX_SECRET_BYTES} bytes, got {len(key)}"
        )
    return key


def format_secret(key: bytes) -> str:
    """Render an HMAC key as a padded ``whsec_`` secret; raises ValueError on a bad length."""
    if not MIN_SECRET_BYTES <= len(key) <= MAX_SECRET_BYTES:
        raise ValueError(f"secret key must be {MIN_SECRET_BYTES}..{MAX_SECRET_BYTES} bytes")
    return SECRET_PREFIX + base64.b64encode(key).decode("ascii")


def generate_secret(rand_bytes: Callable[[int], bytes] = os.urandom) -> str:
    """A fresh secret of 32 bytes from ``rand_bytes`` (a CSPRNG in production)."""
    key = rand_bytes(GENERATED_SECRET_BYTES)
    if len(key) != GENERATED_SECRET_BYTES:
        raise ValueError(f"rand_bytes returned {len(key)} bytes, not {GENERATED_SECRET_BYTES}")
    return format_secret(key)


def sign(secret_key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``v1,<base64>`` signature of ``body`` for one key, id and Unix-seconds timestamp."""
    if not secret_key:
        raise ValueError("secret key must not be empty")
    content = f"{msg_id}.{int(timestamp)}.".encode() + body
    digest = hmac.new(secret_key, content, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def signature_header(secrets: Sequence[bytes], msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value: one entry per distinct key, in the given order.

    Pass the current key first. Raises ValueError when ``secrets`` is empty.
    """
    if not secrets:
        raise ValueError("at least one secret is required to sign")
    unique = list(dict.fromkeys(secrets))
    return " ".join(sign(key, msg_id, timestamp, body) for key in unique)


def webhook_headers(
    secrets: Sequence[bytes], msg_id: str, timestamp: int, body: bytes
) -> dict[str, str]:
    """Every header Postwire sets on a webhook request (lower-case names)."""
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(timestamp)),
        "webhook-signature": signature_header(secrets, msg_id, timestamp, body),
        "content-type": "application/json",
        "user-agent": USER_AGENT,
    }


def active_secrets(
    current: str, previous: str | None, previous_expires_at: datetime | None, now: datetime
) -> list[bytes]:
    """The keys to sign with at ``now``: the current one, then the previous one in its grace.

    The previous secret counts only while ``now < previous_expires_at``; a previous secret
    without an expiry is ignored (an old secret never signs forever). Datetimes must be aware.
    Raises ValueError if a secret is malformed.
    """
    keys = [parse_secret(current)]
    if previous is not None and previous_expires_at is not None and now < previous_expires_at:
        old = parse_secret(previous)
        if old != keys[0]:
            keys.append(old)
    return keys
