"""Delivery as a typed decision: what to do after one attempt.

``classify`` turns an HTTP status or a transport failure into a :class:`FailureKind` (None is
success); ``decide`` turns an :class:`AttemptResult` into :class:`Succeeded`, :class:`RetryAt`
or :class:`Dead`. The shell carries the decision out; nothing here does I/O.
"""

from __future__ import annotations

import codecs
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from shared.core.retry import FailureKind, RetryFloors, next_delay

DeadReason = Literal["retries_exhausted", "non_retryable_status", "gone", "ssrf_blocked"]
EXCERPT_LIMIT_BYTES = 1024
RETRY_AFTER_STATUSES = frozenset({429, 503})


@dataclass(frozen=True)
class AttemptResult:
    """The outcome of one HTTP attempt as the shell observed it.

    ``failure`` is a transport-level failure (timeout, connection, DNS, TLS, SSRF block, ...)
    and is None whenever a response status was received. ``retry_after_s`` is the parsed
    ``Retry-After`` header, if any. ``response_excerpt`` is at most 1 KiB (see
    :func:`response_excerpt`); ``error`` is a short human-readable detail for the attempt row.
    """

    status_code: int | None
    failure: FailureKind | None = None
    retry_after_s: float | None = None
    duration_ms: int = 0
    response_excerpt: str | None = None
    error: str | None = None

    @property
    def kind(self) -> FailureKind | None:
        """The classified failure, or None for a success."""
        return classify(self.status_code, self.failure)


@dataclass(frozen=True)
class Succeeded:
    """The endpoint answered 2xx: the delivery is done."""


@dataclass(frozen=True)
class RetryAt:
    """Try again at ``at`` (``delay_s`` seconds after the decision's ``now``)."""

    at: datetime
    delay_s: float


@dataclass(frozen=True)
class Dead:
    """Stop trying: dead-letter the delivery; disable the endpoint if ``disable_endpoint``."""

    reason: DeadReason
    disable_endpoint: bool = False


Decision = Succeeded | RetryAt | Dead


def classify(status_code: int | None, error: FailureKind | None) -> FailureKind | None:
    """Map an attempt to a failure kind; None means success (a 2xx response).

    A transport ``error`` wins over any status. 1xx, 408, 425, 5xx and codes outside
    100..599 are retryable; 3xx is REDIRECT (never followed); 429 RATE_LIMITED; 410 GONE;
    any other 4xx NON_RETRYABLE_STATUS. Raises ValueError when both arguments are None.
    """
    if error is not None:
        return error
    if status_code is None:
        raise ValueError("an attempt needs a status code or a failure")
    if 200 <= status_code <= 299:
        return None
    if 300 <= status_code <= 399:
        return FailureKind.REDIRECT
    if status_code == 429:
        return FailureKind.RATE_LIMITED
    if status_code == 410:
        return FailureKind.GONE
    if 400 <= status_code <= 499 and status_code not in (408, 425):
        return FailureKind.NON_RETRYABLE_STATUS
    return FailureKind.RETRYABLE_STATUS


def decide(
    result: AttemptResult,
    attempts_made_in_round: int,
    schedule: Sequence[float],
    now: datetime,
    rng: random.Random,
    floors: RetryFloors | None = None,
) -> Decision:
    """What to do after an attempt.

    ``attempts_made_in_round`` counts the attempts of the current round (a replay starts a new
    round), including the one in ``result``. A Retry-After is honoured only on 429 and 503.
    410 is Dead("gone") and disables the endpoint; any other non-retryable 4xx is
    Dead("non_retryable_status"); a target the SSRF guard refused is Dead("ssrf_blocked") at
    once (private address, loopback name or denied port: retrying cannot change that); a
    retryable failure after the schedule's last attempt is
    Dead("retries_exhausted"). Raises ValueError on inconsistent input (see :func:`classify`,
    :func:`next_delay`).
    """
    kind = classify(result.status_code, result.failure)
    if kind is None:
        return Succeeded()
    if kind is FailureKind.GONE:
        return Dead("gone", disable_endpoint=True)
    if kind is FailureKind.NON_RETRYABLE_STATUS:
        return Dead("non_retryable_status")
    if kind is FailureKind.SSRF_BLOCKED:
        return Dead("ssrf_blocked")
    retry_after = (
        result.retry_after_s
        if result.failure is None and result.status_code in RETRY_AFTER_STATUSES
        else None
    )
    delay = next_delay(attempts_made_in_round, kind, schedule, rng, retry_after, floors)
    if delay is None:
        return Dead("retries_exhausted")
    return RetryAt(at=now + timedelta(seconds=delay), delay_s=delay)


def response_excerpt(body: bytes, limit_bytes: int = EXCERPT_LIMIT_BYTES) -> str:
    """A text excerpt of a response body whose UTF-8 form is at most ``limit_bytes``.

    Invalid UTF-8 becomes U+FFFD, NUL characters (which Postgres text refuses) become U+FFFD,
    and a character cut in half at the limit is dropped.
    """
    if limit_bytes < 0:
        raise ValueError("limit_bytes must be >= 0")
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    # final=False keeps a character cut at the limit pending instead of replacing it
    text = decoder.decode(body[:limit_bytes], final=False).replace("\x00", "\ufffd")
    encoded = text.encode("utf-8")
    if len(encoded) <= limit_bytes:
        return text
    return encoded[:limit_bytes].decode("utf-8", errors="ignore")
