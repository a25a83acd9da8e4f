"""Classification of attempts and the Succeeded / RetryAt / Dead decision."""

from __future__ import annotations

import dataclasses
import random
from datetime import UTC, datetime, timedelta

import pytest

from shared.core.decision import (
    AttemptResult,
    Dead,
    RetryAt,
    Succeeded,
    classify,
    decide,
    response_excerpt,
)
from shared.core.retry import FailureKind, RetryFloors

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 22, 10, 0, 0, tzinfo=UTC)
SCHEDULE = (0.0, 5.0, 300.0, 1800.0)
K = FailureKind


# --- classify ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (200, None), (201, None), (202, None), (204, None), (299, None),
        (100, K.RETRYABLE_STATUS), (101, K.RETRYABLE_STATUS), (199, K.RETRYABLE_STATUS),
        (300, K.REDIRECT), (301, K.REDIRECT), (302, K.REDIRECT), (304, K.REDIRECT),
        (307, K.REDIRECT), (308, K.REDIRECT), (399, K.REDIRECT),
        (400, K.NON_RETRYABLE_STATUS), (401, K.NON_RETRYABLE_STATUS),
        (403, K.NON_RETRYABLE_STATUS), (404, K.NON_RETRYABLE_STATUS),
        (405, K.NON_RETRYABLE_STATUS), (409, K.NON_RETRYABLE_STATUS),
        (413, K.NON_RETRYABLE_STATUS), (422, K.NON_RETRYABLE_STATUS),
        (451, K.NON_RETRYABLE_STATUS), (499, K.NON_RETRYABLE_STATUS),
        (408, K.RETRYABLE_STATUS), (425, K.RETRYABLE_STATUS),
        (429, K.RATE_LIMITED),
        (410, K.GONE),
        (500, K.RETRYABLE_STATUS), (502, K.RETRYABLE_STATUS), (503, K.RETRYABLE_STATUS),
        (504, K.RETRYABLE_STATUS), (599, K.RETRYABLE_STATUS),
        (0, K.RETRYABLE_STATUS), (600, K.RETRYABLE_STATUS), (999, K.RETRYABLE_STATUS),
    ],
)
def test_classify_status(status: int, expected: FailureKind | None) -> None:
    assert classify(status, None) is expected


@pytest.mark.parametrize("kind", list(FailureKind))
def test_classify_transport_error_wins(kind: FailureKind) -> None:
    assert classify(None, kind) is kind
    assert classify(200, kind) is kind


def test_classify_needs_status_or_error() -> None:
    with pytest.raises(ValueError):
        classify(None, None)


def test_attempt_result_kind() -> None:
    assert AttemptResult(status_code=204).kind is None
    assert AttemptResult(status_code=None, failure=K.TLS).kind is K.TLS
    assert AttemptResult(status_code=418).kind is K.NON_RETRYABLE_STATUS


# --- decide -----------------------------------------------------------------------------------


def run(result: AttemptResult, attempts: int = 1, schedule: tuple[float, ...] = SCHEDULE,
        seed: int = 0, floors: RetryFloors | None = None) -> Succeeded | RetryAt | Dead:
    return decide(result, attempts, schedule, NOW, random.Random(seed), floors)


@pytest.mark.parametrize("status", [200, 201, 204, 299])
def test_decide_success(status: int) -> None:
    assert run(AttemptResult(status_code=status)) == Succeeded()


def test_decide_success_even_on_last_attempt() -> None:
    assert run(AttemptResult(status_code=200), attempts=len(SCHEDULE)) == Succeeded()


def test_decide_gone_disables_endpoint() -> None:
    assert run(AttemptResult(status_code=410)) == Dead("gone", disable_endpoint=True)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 413, 422])
def test_decide_non_retryable_status_dies_at_once(status: int) -> None:
    decision = run(AttemptResult(status_code=status), attempts=1)
    assert decision == Dead("non_retryable_status", disable_endpoint=False)


@pytest.mark.parametrize(
    "result",
    [
        AttemptResult(status_code=500),
        AttemptResult(status_code=503),
        AttemptResult(status_code=408),
        AttemptResult(status_code=425),
        AttemptResult(status_code=302),
        AttemptResult(status_code=100),
        AttemptResult(status_code=None, failure=K.CONNECTION),
        AttemptResult(status_code=None, failure=K.DNS),
        AttemptResult(status_code=None, failure=K.TLS),
        AttemptResult(status_code=None, failure=K.TOO_LARGE),
    ],
)
def test_decide_retryable_failures_retry_on_schedule(result: AttemptResult) -> None:
    decision = run(result, attempts=2)
    assert isinstance(decision, RetryAt)
    assert 240.0 <= decision.delay_s <= 360.0
    assert decision.at == NOW + timedelta(seconds=decision.delay_s)


@pytest.mark.parametrize("attempts", [1, 2, 8])
def test_decide_ssrf_blocked_dies_at_once(attempts: int) -> None:
    """The guard refuses the same target on every attempt: no point walking the schedule."""
    decision = run(AttemptResult(status_code=None, failure=K.SSRF_BLOCKED), attempts=attempts)
    assert decision == Dead("ssrf_blocked", disable_endpoint=False)


def test_decide_retry_at_matches_delay_for_many_seeds() -> None:
    for seed in range(200):
        decision = run(AttemptResult(status_code=502), attempts=1, seed=seed)
        assert isinstance(decision, RetryAt)
        assert 4.0 <= decision.delay_s <= 6.0
        assert decision.at - NOW == timedelta(seconds=decision.delay_s)


@pytest.mark.parametrize(
    "result",
    [
        AttemptResult(status_code=500),
        AttemptResult(status_code=429, retry_after_s=5.0),
        AttemptResult(status_code=None, failure=K.TIMEOUT),
        AttemptResult(status_code=301),
    ],
)
def test_decide_exhausted_after_last_attempt(result: AttemptResult) -> None:
    assert run(result, attempts=len(SCHEDULE)) == Dead("retries_exhausted", False)
    assert isinstance(run(result, attempts=len(SCHEDULE) - 1), RetryAt)


@pytest.mark.parametrize("status", [429, 503])
def test_decide_honours_retry_after_on_429_and_503(status: int) -> None:
    decision = run(AttemptResult(status_code=status, retry_after_s=120.0), attempts=1)
    assert decision == RetryAt(at=NOW + timedelta(seconds=120), delay_s=120.0)


def test_decide_caps_retry_after_at_longest_step() -> None:
    decision = run(AttemptResult(status_code=429, retry_after_s=86400.0), attempts=1)
    assert decision == RetryAt(at=NOW + timedelta(seconds=1800), delay_s=1800.0)


@pytest.mark.parametrize("status", [500, 502, 504, 408, 302])
def test_decide_ignores_retry_after_on_other_statuses(status: int) -> None:
    decision = run(AttemptResult(status_code=status, retry_after_s=1000.0), attempts=1)
    assert isinstance(decision, RetryAt)
    assert decision.delay_s <= 6.0


def test_decide_ignores_retry_after_on_transport_failure() -> None:
    result = AttemptResult(status_code=503, failure=K.CONNECTION, retry_after_s=1000.0)
    decision = run(result, attempts=1)
    assert isinstance(decision, RetryAt) and decision.delay_s <= 6.0


def test_decide_applies_floors() -> None:
    short = (0.0, 1.0, 300.0)
    timeout = run(AttemptResult(status_code=None, failure=K.TIMEOUT), attempts=1, schedule=short)
    limited = run(AttemptResult(status_code=429), attempts=1, schedule=short)
    plain = run(AttemptResult(status_code=500), attempts=1, schedule=short)
    assert timeout == RetryAt(at=NOW + timedelta(seconds=5), delay_s=5.0)
    assert limited == RetryAt(at=NOW + timedelta(seconds=10), delay_s=10.0)
    assert isinstance(plain, RetryAt) and plain.delay_s <= 1.2
    custom = run(AttemptResult(status_code=429), attempts=1, schedule=short,
                 floors=RetryFloors(timeout_s=1.0, rate_limited_s=20.0))
    assert custom == RetryAt(at=NOW + timedelta(seconds=20), delay_s=20.0)


def test_decide_first_attempt_index_with_zero_steps() -> None:
    decision = run(AttemptResult(status_code=500), attempts=1, schedule=(0.0, 0.0, 0.0))
    assert decision == RetryAt(at=NOW, delay_s=0.0)


def test_decide_rejects_zero_attempts() -> None:
    with pytest.raises(ValueError):
        run(AttemptResult(status_code=500), attempts=0)


def test_decisions_are_frozen() -> None:
    retry = RetryAt(at=NOW, delay_s=1.0)
    dead = Dead("gone", True)
    result = AttemptResult(status_code=200)
    with pytest.raises(dataclasses.FrozenInstanceError):
        retry.delay_s = 2.0  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        dead.reason = "retries_exhausted"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.status_code = 500  # type: ignore[misc]


# --- response_excerpt -------------------------------------------------------------------------


def test_excerpt_short_body_unchanged() -> None:
    assert response_excerpt(b'{"ok":true}') == '{"ok":true}'
    assert response_excerpt(b"") == ""


def test_excerpt_truncates_to_one_kib() -> None:
    text = response_excerpt(b"a" * 5000)
    assert text == "a" * 1024


def test_excerpt_drops_character_cut_at_limit() -> None:
    body = b"a" * 1023 + "\u00e9".encode() + b"tail"  # the 2-byte char straddles the limit
    assert response_excerpt(body) == "a" * 1023


def test_excerpt_keeps_whole_multibyte_characters() -> None:
    body = "\u20ac".encode() * 1000  # 3 bytes each
    text = response_excerpt(body)
    assert text == "\u20ac" * 341
    assert len(text.encode()) <= 1024


def test_excerpt_replaces_invalid_utf8_and_nul() -> None:
    assert response_excerpt(b"ok\xff\xfeend\x00!") == "ok\ufffd\ufffdend\ufffd!"


def test_excerpt_never_exceeds_limit_for_random_bytes() -> None:
    rng = random.Random(2024)
    for _ in range(300):
        body = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 2000)))
        limit = rng.choice([0, 1, 2, 3, 17, 1024])
        text = response_excerpt(body, limit)
        assert len(text.encode("utf-8")) <= limit
        assert "\x00" not in text


def test_excerpt_rejects_negative_limit() -> None:
    with pytest.raises(ValueError):
        response_excerpt(b"x", -1)
