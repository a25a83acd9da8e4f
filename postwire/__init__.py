"""Postwire's Python library for the services that send events and the merchants that receive
them.

- :mod:`postwire.client`: :class:`~postwire.client.PostwireClient` sends events to the ingest
  API (``send``, ``send_batch``) with automatic idempotency keys and retries.
- :mod:`postwire.webhooks`: :func:`~postwire.webhooks.verify` checks a received webhook's
  Standard Webhooks signature.
- :mod:`postwire.catchup`: :func:`~postwire.catchup.find_unseen` reads an endpoint's catch-up
  feed and returns the webhooks a merchant never processed.

Standard library only: it runs wherever Python 3.11 does, without the services' dependencies.
"""

from __future__ import annotations

from postwire.catchup import FeedClient, FeedError, find_unseen
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
    "FeedClient",
    "FeedError",
    "PostwireApiError",
    "PostwireClient",
    "PostwireUnavailable",
    "SentEvent",
    "WebhookVerificationError",
    "find_unseen",
    "verify",
]
