"""``postwire.webhooks.verify`` agrees with the stock Standard Webhooks library both ways and
refuses tampered, stale or unsigned requests."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import pytest
from standardwebhooks.webhooks import Webhook

from postwire.webhooks import WebhookVerificationError, sign, verify

SECRET = "whsec_" + base64.b64encode(b"k" * 32).decode()
OLD_SECRET = "whsec_" + base64.b64encode(b"o" * 32).decode()
BODY = b'{"id":"evt_1","type":"invoice.paid","data":{"amount":4200}}'
NOW = 1_800_000_000


def headers(signature: str, stamp: int = NOW) -> dict[str, str]:
    return {"Webhook-Id": "evt_1", "Webhook-Timestamp": str(stamp),
            "Webhook-Signature": signature}


def test_a_signature_from_the_stock_library_verifies() -> None:
    stock = Webhook(SECRET).sign("evt_1", datetime.fromtimestamp(NOW, UTC), BODY.decode())
    assert verify(BODY, headers(stock), SECRET, now=NOW) == {
        "id": "evt_1", "type": "invoice.paid", "data": {"amount": 4200}}


def test_our_signature_verifies_with_the_stock_library() -> None:
    stamp = int(datetime.now(UTC).timestamp())  # the stock library checks against the clock
    hdrs = {"webhook-id": "evt_1", "webhook-timestamp": str(stamp),
            "webhook-signature": sign(SECRET, "evt_1", stamp, BODY)}
    assert Webhook(SECRET).verify(BODY, hdrs)["id"] == "evt_1"


def test_rotation_sends_two_entries_and_either_secret_verifies() -> None:
    both = f"{sign(SECRET, 'evt_1', NOW, BODY)} {sign(OLD_SECRET, 'evt_1', NOW, BODY)}"
    assert verify(BODY, headers(both), OLD_SECRET, now=NOW)["id"] == "evt_1"
    assert verify(BODY, headers(sign(OLD_SECRET, "evt_1", NOW, BODY)),
                  [SECRET, OLD_SECRET], now=NOW)["id"] == "evt_1"


@pytest.mark.parametrize("body, hdrs, match", [
    (BODY + b" ", headers(sign(SECRET, "evt_1", NOW, BODY)), "no matching signature"),
    (BODY, headers(sign(OLD_SECRET, "evt_1", NOW, BODY)), "no matching signature"),
    (BODY, headers(sign(SECRET, "evt_1", NOW - 301, BODY), NOW - 301), "outside the tolerance"),
    (BODY, headers(sign(SECRET, "evt_1", NOW + 301, BODY), NOW + 301), "outside the tolerance"),
    (BODY, {"webhook-id": "evt_1", "webhook-timestamp": str(NOW)}, "missing webhook-signature"),
    (BODY, headers("v1,AAAA", stamp=NOW) | {"Webhook-Timestamp": "soon"}, "not a Unix time"),
    (b"not json", headers(sign(SECRET, "evt_1", NOW, b"not json")), "not JSON"),
])
def test_bad_requests_are_refused(body: bytes, hdrs: dict[str, str], match: str) -> None:
    with pytest.raises(WebhookVerificationError, match=match):
        verify(body, hdrs, SECRET, now=NOW)
