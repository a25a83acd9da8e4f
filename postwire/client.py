"""A client of the Postwire ingest API for the internal services that emit events.

::

    from postwire.client import PostwireClient

    client = PostwireClient("https://postwire.internal:8080", api_key)
    sent = client.send("acct_1", "invoice.paid", {"invoice": "in_42", "amount": 4200},
                       ordering_key="in_42", idempotency_key="invoice-in_42-paid")
    sent.id, sent.delivery_count, sent.replayed

Contract:

- Every event carries an ``Idempotency-Key``: the caller's, or one generated per call (a
  UUID). It stays the same on every retry of that call, so a retry after a lost answer never
  stores or delivers the event twice. Pass your own key (an order id, say) to make a retry of
  *your* operation safe too.
- Retried, with exponential backoff and full jitter (``backoff_base_s`` doubling, at most
  ``backoff_max_s``): connection errors, timeouts, 5xx and 429. ``Retry-After`` (seconds or an
  HTTP date) on 429/503 is honoured, up to ``max_retry_after_s``. After ``max_attempts``
  attempts :class:`PostwireUnavailable` is raised. Other 4xx are not retried:
  :class:`PostwireApiError` carries the contract's error (``type``, ``message``, ``param``).
- ``send_batch`` sends up to 500 events in one request; each result is a :class:`SentEvent` or,
  for an event the API refused on its own, a :class:`BatchItemError`, in order.
- Calls block (``urllib``); one client may be shared by threads. Nothing is sent to a proxy for
  loopback URLs.
"""

from __future__ import annotations

import json
import random
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

BATCH_MAX_EVENTS = 500
_RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})
_LOOPBACK = ("127.0.0.1", "localhost", "::1")


class ClientError(Exception):
    """Base of what :class:`PostwireClient` raises."""


class PostwireApiError(ClientError):
    """The API refused the request (a 4xx other than 429); retrying the same request will not
    help. ``status``, ``type``, ``message`` and ``param`` are the contract's error."""

    def __init__(self, status: int, type_: str, message: str, param: str | None) -> None:
        super().__init__(f"{status} {type_}: {message}" + (f" (param {param})" if param else ""))
        self.status, self.type, self.message, self.param = status, type_, message, param


class PostwireUnavailable(ClientError):
    """Every attempt failed with a connection error, a timeout, a 5xx or a 429; ``last`` says
    how the last one failed. The event may or may not have been stored: retrying later with
    the same ``idempotency_key`` (``self.idempotency_keys``) is safe."""

    def __init__(self, message: str, attempts: int, idempotency_keys: list[str]) -> None:
        super().__init__(f"{message} (after {attempts} attempts)")
        self.last, self.attempts, self.idempotency_keys = message, attempts, idempotency_keys


@dataclass(frozen=True)
class SentEvent:
    """An accepted event: committed with its deliveries. ``replayed`` is True when the API
    answered an earlier request with the same key (nothing new was stored), False when it
    stored the event now, None in batch results (the batch answer does not say)."""

    id: str
    account_id: str
    type: str
    ordering_key: str | None
    created_at: str
    delivery_count: int
    idempotency_key: str
    replayed: bool | None


@dataclass(frozen=True)
class BatchItemError:
    """One event of a batch that the API refused (the others were accepted)."""

    index: int
    type: str
    message: str
    param: str | None
    idempotency_key: str


@dataclass(frozen=True)
class _Response:
    status: int
    headers: Mapping[str, str]
    body: Any


def _error_of(status: int, body: Any) -> PostwireApiError:
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return PostwireApiError(status, "unexpected_response", repr(body)[:200], None)
    return PostwireApiError(status, str(error.get("type")), str(error.get("message")),
                            error.get("param"))


def retry_after_s(value: str | None, now: float) -> float | None:
    """Seconds a ``Retry-After`` header asks to wait (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - now)
    except (TypeError, ValueError):
        return None


class PostwireClient:
    """See the module docstring. ``sleep``, ``rng`` and ``new_key`` exist for tests."""

    def __init__(self, base_url: str, api_key: str, *, timeout_s: float = 10.0,
                 max_attempts: int = 6, backoff_base_s: float = 0.2,
                 backoff_max_s: float = 10.0, max_retry_after_s: float = 60.0,
                 sleep: Callable[[float], None] = time.sleep,
                 rng: Callable[[], float] = random.random,
                 new_key: Callable[[], str] = lambda: f"pwc_{uuid.uuid4().hex}") -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self.base_url = base_url.rstrip("/")
        self._auth = f"Bearer {api_key}"
        self._timeout_s, self._max_attempts = timeout_s, max_attempts
        self._backoff_base_s, self._backoff_max_s = backoff_base_s, backoff_max_s
        self._max_retry_after_s = max_retry_after_s
        self._sleep, self._rng, self._new_key = sleep, rng, new_key
        host = urllib.parse.urlsplit(self.base_url).hostname or ""
        handlers = [urllib.request.ProxyHandler({})] if host in _LOOPBACK else []
        self._opener = urllib.request.build_opener(*handlers)

    # -- public API ----------------------------------------------------------------------------

    def send(self, account_id: str, type: str, data: Mapping[str, Any], *,
             ordering_key: str | None = None, idempotency_key: str | None = None) -> SentEvent:
        """Send one event; returns once it is committed. Raises PostwireApiError (refused) or
        PostwireUnavailable (every attempt failed)."""
        key = idempotency_key or self._new_key()
        body = _event_body(account_id, type, data, ordering_key)
        response = self._call("/v1/events", body, {"Idempotency-Key": key}, [key])
        if response.status != 202:
            raise _error_of(response.status, response.body)
        replayed = response.headers.get("Idempotent-Replayed", "").lower() == "true"
        return _sent(response.body, key, replayed)

    def send_batch(self, events: Sequence[Mapping[str, Any]]) -> list[SentEvent | BatchItemError]:
        """Send up to 500 events (each a mapping with ``account_id``, ``type``, ``data`` and
        optionally ``ordering_key`` and ``idempotency_key``) in one request; results in order.
        Raises ValueError for an empty or oversized batch, PostwireApiError when the whole
        request is refused, PostwireUnavailable when every attempt failed."""
        if not 1 <= len(events) <= BATCH_MAX_EVENTS:
            raise ValueError(f"a batch holds 1..{BATCH_MAX_EVENTS} events, not {len(events)}")
        items, keys = [], []
        for event in events:
            key = str(event.get("idempotency_key") or self._new_key())
            keys.append(key)
            items.append({**_event_body(event["account_id"], event["type"], event["data"],
                                        event.get("ordering_key")), "idempotency_key": key})
        response = self._call("/v1/events/batch", {"events": items}, {}, keys)
        if response.status != 202:
            raise _error_of(response.status, response.body)
        return [_batch_result(n, item, keys[n]) for n, item in enumerate(response.body["data"])]

    # -- transport -----------------------------------------------------------------------------

    def _call(self, path: str, body: Any, headers: Mapping[str, str],
              keys: list[str]) -> _Response:
        payload = json.dumps(body, separators=(",", ":")).encode()
        last = ""
        for attempt in range(1, self._max_attempts + 1):
            wait: float | None = None
            try:
                response = self._post(path, payload, headers)
            except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as exc:
                last = f"cannot reach {self.base_url}: {getattr(exc, 'reason', exc)}"
            else:
                if response.status not in _RETRYABLE_STATUS:
                    return response
                last = f"{response.status} from {self.base_url}{path}"
                wait = retry_after_s(response.headers.get("Retry-After"), time.time())
            if attempt < self._max_attempts:
                self._sleep(self._delay(attempt, wait))
        raise PostwireUnavailable(last, self._max_attempts, keys)

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self._max_retry_after_s)
        ceiling = min(self._backoff_max_s, self._backoff_base_s * 2.0 ** (attempt - 1))
        return ceiling * self._rng()

    def _post(self, path: str, payload: bytes, headers: Mapping[str, str]) -> _Response:
        request = urllib.request.Request(
            self.base_url + path, data=payload, method="POST",
            headers={"Authorization": self._auth, "Content-Type": "application/json",
                     "User-Agent": "postwire-python", **headers})
        try:
            with self._opener.open(request, timeout=self._timeout_s) as answer:
                return _Response(answer.status, dict(answer.headers.items()),
                                 _json(answer.read()))
        except urllib.error.HTTPError as exc:
            with exc:
                return _Response(exc.code, dict(exc.headers.items()), _json(exc.read()))


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw[:200].decode(errors="replace")


def _event_body(account_id: str, type_: str, data: Mapping[str, Any],
                ordering_key: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {"account_id": account_id, "type": type_, "data": dict(data)}
    if ordering_key is not None:
        body["ordering_key"] = ordering_key
    return body


def _sent(body: Mapping[str, Any], key: str, replayed: bool | None) -> SentEvent:
    return SentEvent(id=body["id"], account_id=body["account_id"], type=body["type"],
                     ordering_key=body.get("ordering_key"), created_at=body["created_at"],
                     delivery_count=int(body["delivery_count"]), idempotency_key=key,
                     replayed=replayed)


def _batch_result(index: int, item: Mapping[str, Any], key: str) -> SentEvent | BatchItemError:
    error = item.get("error")
    if isinstance(error, dict):
        return BatchItemError(index=index, type=str(error.get("type")),
                              message=str(error.get("message")), param=error.get("param"),
                              idempotency_key=key)
    return _sent(item, key, None)
