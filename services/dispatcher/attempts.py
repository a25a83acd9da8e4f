"""One webhook attempt: sign, POST, and turn what happened into an :class:`AttemptResult`.

Headers follow Standard Webhooks: ``webhook-id`` is the event id (the same on every attempt
and replay), ``webhook-timestamp`` is the time of this attempt, ``webhook-signature`` carries
one ``v1,`` entry per active secret (two during a rotation's grace period). The body is the
stored event body, byte for byte.
"""

from __future__ import annotations

from datetime import datetime

from services.dispatcher.model import Claimed
from shared.adapters.http_client import HttpOutcome, WebhookClient
from shared.core.decision import RETRY_AFTER_STATUSES, AttemptResult, response_excerpt
from shared.core.retry import parse_retry_after
from shared.core.signing import webhook_headers
from shared.core.timefmt import utcnow


def to_result(outcome: HttpOutcome, now: datetime) -> AttemptResult:
    """The attempt as the decision core sees it.

    ``error`` is the failure class name (``timeout``, ``connection``, ...) when no response
    arrived; the excerpt is at most 1 KiB of the body read (None without a response).
    """
    retry_after = None
    if outcome.status_code in RETRY_AFTER_STATUSES:
        retry_after = parse_retry_after(outcome.retry_after, now)
    return AttemptResult(
        status_code=outcome.status_code,
        failure=outcome.failure,
        retry_after_s=retry_after,
        duration_ms=outcome.duration_ms,
        response_excerpt=(response_excerpt(outcome.body)
                          if outcome.status_code is not None else None),
        error=outcome.failure.value if outcome.failure is not None else None,
    )


async def perform(claimed: Claimed, client: WebhookClient, started: datetime | None = None
                  ) -> tuple[datetime, AttemptResult, str | None]:
    """Send one attempt now; returns (start time, result, transport error detail).

    ``started``: the attempt's start as the caller read it just before (a rate-limited send
    decides on that very reading whether it may still leave); the current time when None.
    Never raises except CancelledError (the client translates every transport failure).
    """
    started = started or utcnow()
    headers = webhook_headers(list(claimed.secrets), claimed.event_id,
                              int(started.timestamp()), claimed.body)
    outcome = await client.post(claimed.url, claimed.body, headers)
    return started, to_result(outcome, utcnow()), outcome.error
