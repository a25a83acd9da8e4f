"""Merchant side: verify that a webhook really comes from Postwire (Standard Webhooks).

::

    from postwire.webhooks import WebhookVerificationError, verify

    try:
        event = verify(request_body_bytes, request.headers, "whsec_...")
    except WebhookVerificationError:
        return 400
    handle(event["id"], event["type"], event["data"])   # deduplicate on event["id"]

The signed content is ``<webhook-id>.<webhook-timestamp>.<body>``, HMAC-SHA256 keyed with the
base64-decoded part of the secret after ``whsec_``; ``webhook-signature`` holds one or more
space-separated ``v1,<base64>`` entries (two during a secret rotation) and one matching entry
is enough. The stock Standard Webhooks libraries accept the same requests.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from collections.abc import Mapping, Sequence
from typing import Any

DEFAULT_TOLERANCE_S = 300


class WebhookVerificationError(Exception):
    """The request is not a valid Postwire webhook: answer it with 400 and do not process it."""


def secret_key(secret: str) -> bytes:
    """The HMAC key of a ``whsec_`` secret (its base64 part, decoded); ValueError if malformed."""
    raw = secret.removeprefix("whsec_")
    try:
        return base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("secret must be whsec_ followed by base64") from exc


def sign(secret: str, webhook_id: str, timestamp: int, body: bytes) -> str:
    """The ``v1,<base64>`` signature entry Postwire sends for this content."""
    content = f"{webhook_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_key(secret), content, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def _header(headers: Mapping[str, str], name: str) -> str:
    for key, value in headers.items():
        if key.lower() == name:
            return value
    raise WebhookVerificationError(f"missing {name} header")


def verify(body: bytes, headers: Mapping[str, str], secret: str | Sequence[str], *,
           tolerance_s: int = DEFAULT_TOLERANCE_S, now: float | None = None) -> Any:
    """Check the signature and timestamp; return the parsed JSON body.

    ``secret`` may be several secrets (while you roll yours). Raises WebhookVerificationError
    when a header is missing, the timestamp is more than ``tolerance_s`` away from ``now``
    (replays of old requests), no signature entry matches, or the body is not JSON."""
    webhook_id = _header(headers, "webhook-id")
    stamp = _header(headers, "webhook-timestamp")
    if not stamp.isdigit():
        raise WebhookVerificationError("webhook-timestamp is not a Unix time in seconds")
    current = time.time() if now is None else now
    if abs(current - int(stamp)) > tolerance_s:
        raise WebhookVerificationError("webhook-timestamp is outside the tolerance")
    secrets = [secret] if isinstance(secret, str) else list(secret)
    expected = {sign(s, webhook_id, int(stamp), body).encode() for s in secrets}
    offered = [entry.encode() for entry in _header(headers, "webhook-signature").split()]
    if not any(hmac.compare_digest(e, o) for e in expected for o in offered):
        raise WebhookVerificationError("no matching signature")
    try:
        return json.loads(body)
    except ValueError as exc:
        raise WebhookVerificationError("the body is not JSON") from exc
