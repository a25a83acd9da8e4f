"""Postwire's Python library for the services that send events and the merchants that receive
them.

- :mod:`postwire.client`: :class:`~postwire.client.PostwireClient` sends events to the ingest
  API (``send``, ``send_batch``) with automatic idempotency keys and retries.
- :mod:`postwire.webhooks`: :func:`~postwire.webhooks.verify` checks a received webhook's
  Standard Webhooks signature.

Standard library only: it runs wherever Python 3.11 does, without the services' dependencies.
"""

from __future__ import annotations

from postwire.client import (
    BatchItemError,
    ClientError,
    PostwireApiError,
    PostwireClient,
    PostwireUnavailable,
    SentEvent,
)
from postwire.webhooks import WebhookVerificationError, verify

__all__ = [
    "BatchItemError",
    "ClientError",
    "PostwireApiError",
    "PostwireClient",
    "PostwireUnavailable",
    "SentEvent",
    "WebhookVerificationError",
    "verify",
]
