"""Feed tokens: the credential of an endpoint's catch-up feed (``GET /v1/feed/{endpoint_id}``).

A feed token is derived from the endpoint's signing secret, never stored::

    pwfeed_ + base64url(HMAC-SHA256(key = the secret's HMAC key,
                                    msg = "postwire.feed.v1" NUL endpoint_id)), unpadded

- Scoped to one endpoint: the endpoint id is in the MAC, so a token opens no other feed.
- The merchant already holds the secret (it verifies webhooks with it), so it can compute its
  token itself (:func:`feed_token`, also in :mod:`postwire.catchup`); a producer can fetch
  it with ``GET /v1/endpoints/{id}/feed-token``. Nothing new to issue, store or leak.
- It reveals nothing about the secret (HMAC is one-way) and is not a webhook signature (a
  different message domain), so it cannot be replayed as one.
- Rotating the secret rotates the token: during the rotation's grace period tokens of both the
  current and the previous secret are accepted, afterwards only the new one.

Pure: hashlib, hmac and base64 only, so a client may import this module on its own.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Sequence

from shared.core.signing import parse_secret

FEED_TOKEN_PREFIX = "pwfeed_"
_DOMAIN = b"postwire.feed.v1\x00"


def feed_token_for_key(endpoint_id: str, key: bytes) -> str:
    """The feed token of ``endpoint_id`` for an HMAC key (a parsed secret)."""
    mac = hmac.new(key, _DOMAIN + endpoint_id.encode(), hashlib.sha256).digest()
    return FEED_TOKEN_PREFIX + base64.urlsafe_b64encode(mac).rstrip(b"=").decode("ascii")


def feed_token(endpoint_id: str, secret: str) -> str:
    """The feed token of ``endpoint_id`` for a ``whsec_`` secret; ValueError if malformed."""
    return feed_token_for_key(endpoint_id, parse_secret(secret))


def verify_feed_token(presented: str, endpoint_id: str, keys: Sequence[bytes]) -> bool:
    """True when ``presented`` is the token of ``endpoint_id`` for one of ``keys`` (compared
    in constant time against each)."""
    candidate = presented.encode("utf-8", "surrogateescape")
    ok = False
    for key in keys:
        ok |= hmac.compare_digest(candidate, feed_token_for_key(endpoint_id, key).encode())
    return ok
