"""Merchant catch-up: read an endpoint's feed and find the webhooks a merchant never saw.

Standard library only (``urllib``), so a merchant can use it without the rest of Postwire::

    from postwire.catchup import find_unseen
    missed = find_unseen("https://hooks.example.com", "ep_...", processed_ids,
                         secret="whsec_...")           # or token="pwfeed_..."
    for item in missed.items:                           # in acceptance order
        handle(item.webhook_id, item.body)
    save(missed.cursor)                                 # resume from here next time

The feed (``GET /v1/feed/{endpoint_id}``) lists every event routed to the endpoint once, in
acceptance order, with its ``webhook-id`` and delivery status; the feed token is derived from
the endpoint's signing secret (:func:`feed_token`). Every call blocks for at most
``timeout_s`` per page; failures raise :class:`FeedError`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from postwire.webhooks import secret_key

PAGE_SIZE = 100
FEED_TOKEN_PREFIX = "pwfeed_"
_FEED_DOMAIN = b"postwire.feed.v1\x00"
_LOOPBACK = ("127.0.0.1", "localhost", "::1")


def feed_token(endpoint_id: str, secret: str) -> str:
    """The feed token of ``endpoint_id`` for its ``whsec_`` signing secret: ``pwfeed_`` +
    unpadded base64url of HMAC-SHA256(secret key, "postwire.feed.v1" NUL endpoint_id). The
    server derives the same (a test keeps the two in agreement). ValueError if malformed."""
    mac = hmac.new(secret_key(secret), _FEED_DOMAIN + endpoint_id.encode(), hashlib.sha256)
    return FEED_TOKEN_PREFIX + base64.urlsafe_b64encode(mac.digest()).rstrip(b"=").decode("ascii")


class FeedError(Exception):
    """The feed refused the request or could not be reached; ``status`` is the HTTP status
    (0 when there was no answer) and ``type`` the contract's error type when there was one."""

    def __init__(self, status: int, type_: str | None, message: str) -> None:
        super().__init__(f"{status} {type_ or 'error'}: {message}")
        self.status = status
        self.type = type_
        self.message = message


@dataclass(frozen=True, slots=True)
class FeedItem:
    """One event routed to the endpoint, as the feed shows it."""

    webhook_id: str
    event_id: str
    type: str
    created_at: str
    delivery_id: str
    status: str
    attempt_count: int
    body: dict[str, Any]

    @classmethod
    def from_json(cls, item: dict[str, Any]) -> FeedItem:
        return cls(item["webhook_id"], item["event_id"], item["type"], item["created_at"],
                   item["delivery_id"], item["status"], item["attempt_count"], item["body"])


@dataclass(slots=True)
class Unseen:
    """What :func:`find_unseen` found: the missed items in feed order, and the cursor after
    the last item read (pass it back next time to read only what came since)."""

    items: list[FeedItem] = field(default_factory=list)
    cursor: str | None = None
    read: int = 0


class FeedClient:
    """Reads one endpoint's feed with a feed token (given, or derived from ``secret``)."""

    def __init__(self, base_url: str, endpoint_id: str, *, token: str | None = None,
                 secret: str | None = None, timeout_s: float = 15.0) -> None:
        if token is None:
            if secret is None:
                raise ValueError("give the endpoint's feed token or its signing secret")
            token = feed_token(endpoint_id, secret)
        self.base_url = base_url.rstrip("/")
        self.endpoint_id = endpoint_id
        self._token = token
        self._timeout_s = timeout_s
        host = urllib.parse.urlsplit(self.base_url).hostname or ""
        handlers = [urllib.request.ProxyHandler({})] if host in _LOOPBACK else []
        self._opener = urllib.request.build_opener(*handlers)

    def page(self, cursor: str | None = None, since: str | None = None,
             limit: int = PAGE_SIZE) -> dict[str, Any]:
        """One page: ``{"data", "has_more", "next_cursor"}``."""
        query = {k: v for k, v in (("cursor", cursor), ("since", since),
                                   ("limit", str(limit))) if v is not None}
        url = (f"{self.base_url}/v1/feed/{urllib.parse.quote(self.endpoint_id)}?"
               f"{urllib.parse.urlencode(query)}")
        request = urllib.request.Request(url, headers={
            "Authorization": f"Bearer {self._token}", "Accept": "application/json"})
        try:
            with self._opener.open(request, timeout=self._timeout_s) as response:
                page: dict[str, Any] = json.loads(response.read())
                return page
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                error = json.loads(raw)["error"]
                raise FeedError(exc.code, error.get("type"), str(error.get("message"))) from exc
            except (ValueError, KeyError, TypeError):
                raise FeedError(exc.code, None, raw[:200].decode(errors="replace")) from exc
        except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
            raise FeedError(0, None, f"cannot reach {self.base_url}: "
                                     f"{getattr(exc, 'reason', exc)}") from exc

    def walk(self, cursor: str | None = None, since: str | None = None,
             position: Unseen | None = None) -> Iterator[FeedItem]:
        """Every item from ``cursor`` (or ``since``, or the start) to the end of the feed as
        it is now. ``position.cursor``, when given, follows the pages read (the resume point)."""
        while True:
            page = self.page(cursor, since if cursor is None else None)
            cursor = page["next_cursor"]
            if position is not None:
                position.cursor = cursor
            for item in page["data"]:
                yield FeedItem.from_json(item)
            if not page["has_more"]:
                return


def find_unseen(base_url: str, endpoint_id: str, processed_webhook_ids: Iterable[str], *,
                secret: str | None = None, token: str | None = None,
                cursor: str | None = None, since: str | None = None,
                timeout_s: float = 15.0) -> Unseen:
    """The feed items (from ``cursor``/``since``, else from the start) whose ``webhook_id``
    is not among ``processed_webhook_ids``, in feed order. Raises FeedError."""
    processed = set(processed_webhook_ids)
    client = FeedClient(base_url, endpoint_id, token=token, secret=secret,
                        timeout_s=timeout_s)
    result = Unseen(cursor=cursor)
    for item in client.walk(cursor, since, position=result):
        result.read += 1
        if item.webhook_id not in processed:
            result.items.append(item)
    return result
