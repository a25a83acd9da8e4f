"""Golden vectors and Standard Webhooks interoperability for shared.core.signing."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from datetime import UTC, datetime, timedelta

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from shared.core.signing import (
    USER_AGENT,
    active_secrets,
    format_secret,
    generate_secret,
    parse_secret,
    sign,
    signature_header,
    webhook_headers,
)
from shared.core.version import POSTWIRE_VERSION

pytestmark = pytest.mark.unit

GOLDEN_KEY = bytes(range(32))
GOLDEN_SECRET = "whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
GOLDEN_ID = "evt_01JDC3K6V7T5ZQ8XG4M2N9P1RS"
GOLDEN_TS = 1795000000
GOLDEN_BODY = (
    b'{"id":"evt_01JDC3K6V7T5ZQ8XG4M2N9P1RS","type":"invoice.paid",'
    b'"data":{"amount":4200,"note":"caf\xc3\xa9"}}'
)
# Computed once with `openssl dgst -sha256 -mac HMAC` over "<id>.<ts>.<body>".
GOLDEN_SIGNATURE = "v1,yDUWns/netXN4UfWXR6fOcHHUWS/FT+RO2iv8KpGhHA="

OTHER_KEY = bytes(range(100, 132))
OTHER_SECRET = "whsec_" + base64.b64encode(OTHER_KEY).decode()


def reference_signature(key: bytes, msg_id: str, ts: int, body: bytes) -> str:
    """Independent computation straight from the Standard Webhooks spec."""
    mac = hmac.new(key, msg_id.encode() + b"." + str(ts).encode() + b"." + body, hashlib.sha256)
    return "v1," + base64.b64encode(mac.digest()).decode()


# --- golden vectors -----------------------------------------------------------------------


def test_golden_secret_decodes_to_golden_key() -> None:
    assert parse_secret(GOLDEN_SECRET) == GOLDEN_KEY
    assert format_secret(GOLDEN_KEY) == GOLDEN_SECRET


def test_golden_signature_literal() -> None:
    assert sign(GOLDEN_KEY, GOLDEN_ID, GOLDEN_TS, GOLDEN_BODY) == GOLDEN_SIGNATURE


def test_golden_signature_matches_independent_hmac() -> None:
    expected = reference_signature(GOLDEN_KEY, GOLDEN_ID, GOLDEN_TS, GOLDEN_BODY)
    assert expected == GOLDEN_SIGNATURE
    assert sign(GOLDEN_KEY, GOLDEN_ID, GOLDEN_TS, GOLDEN_BODY) == expected


def test_golden_signature_matches_standardwebhooks_sign() -> None:
    when = datetime.fromtimestamp(GOLDEN_TS, tz=UTC)
    library = Webhook(GOLDEN_SECRET).sign(GOLDEN_ID, when, GOLDEN_BODY.decode())
    assert library == GOLDEN_SIGNATURE


@pytest.mark.parametrize(
    ("msg_id", "ts", "body"),
    [
        ("evt_a", 0, b""),
        ("evt_b", 1, b"{}"),
        ("msg_\u00e9\u4e2d", 1700000000, b'{"k":"v"}'),
        ("evt_c", 4102444800, bytes(range(256))),
    ],
)
def test_sign_matches_reference_for_varied_inputs(msg_id: str, ts: int, body: bytes) -> None:
    assert sign(OTHER_KEY, msg_id, ts, body) == reference_signature(OTHER_KEY, msg_id, ts, body)


def test_signature_depends_on_every_input() -> None:
    base = sign(GOLDEN_KEY, GOLDEN_ID, GOLDEN_TS, GOLDEN_BODY)
    assert sign(OTHER_KEY, GOLDEN_ID, GOLDEN_TS, GOLDEN_BODY) != base
    assert sign(GOLDEN_KEY, GOLDEN_ID + "x", GOLDEN_TS, GOLDEN_BODY) != base
    assert sign(GOLDEN_KEY, GOLDEN_ID, GOLDEN_TS + 1, GOLDEN_BODY) != base
    assert sign(GOLDEN_KEY, GOLDEN_ID, GOLDEN_TS, GOLDEN_BODY + b" ") != base


def test_sign_rejects_empty_key() -> None:
    with pytest.raises(ValueError, match="empty"):
        sign(b"", GOLDEN_ID, GOLDEN_TS, GOLDEN_BODY)


# --- interoperability with the standardwebhooks library ------------------------------------


def test_headers_verify_with_standardwebhooks() -> None:
    ts = int(time.time())
    headers = webhook_headers([GOLDEN_KEY], GOLDEN_ID, ts, GOLDEN_BODY)
    payload = Webhook(GOLDEN_SECRET).verify(GOLDEN_BODY, headers)
    assert payload["data"]["amount"] == 4200


def test_rotation_header_verifies_with_each_secret_alone() -> None:
    ts = int(time.time())
    headers = webhook_headers([OTHER_KEY, GOLDEN_KEY], GOLDEN_ID, ts, GOLDEN_BODY)
    entries = headers["webhook-signature"].split(" ")
    assert entries == [
        reference_signature(OTHER_KEY, GOLDEN_ID, ts, GOLDEN_BODY),
        reference_signature(GOLDEN_KEY, GOLDEN_ID, ts, GOLDEN_BODY),
    ]
    assert Webhook(OTHER_SECRET).verify(GOLDEN_BODY, headers)["type"] == "invoice.paid"
    assert Webhook(GOLDEN_SECRET).verify(GOLDEN_BODY, headers)["type"] == "invoice.paid"


def test_unrelated_secret_and_tampering_fail_verification() -> None:
    ts = int(time.time())
    headers = webhook_headers([OTHER_KEY, GOLDEN_KEY], GOLDEN_ID, ts, GOLDEN_BODY)
    stranger = format_secret(b"\x07" * 32)
    with pytest.raises(WebhookVerificationError):
        Webhook(stranger).verify(GOLDEN_BODY, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(GOLDEN_SECRET).verify(GOLDEN_BODY + b" ", headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(GOLDEN_SECRET).verify(GOLDEN_BODY, {**headers, "webhook-id": "evt_other"})


def test_generated_secret_interoperates() -> None:
    secret = generate_secret()
    ts = int(time.time())
    headers = webhook_headers([parse_secret(secret)], "evt_x", ts, b'{"a":1}')
    assert Webhook(secret).verify(b'{"a":1}', headers) == {"a": 1}


# --- headers ---------------------------------------------------------------------------------


def test_webhook_headers_exact_set() -> None:
    headers = webhook_headers([GOLDEN_KEY], GOLDEN_ID, GOLDEN_TS, GOLDEN_BODY)
    assert headers == {
        "webhook-id": GOLDEN_ID,
        "webhook-timestamp": "1795000000",
        "webhook-signature": GOLDEN_SIGNATURE,
        "content-type": "application/json",
        "user-agent": "Postwire/0.1.0",
    }
    assert headers["user-agent"] == USER_AGENT
    assert headers["user-agent"] == f"Postwire/{POSTWIRE_VERSION}"


def test_signature_header_single_and_order() -> None:
    assert signature_header([GOLDEN_KEY], GOLDEN_ID, GOLDEN_TS, GOLDEN_BODY) == GOLDEN_SIGNATURE
    two = signature_header([GOLDEN_KEY, OTHER_KEY], GOLDEN_ID, GOLDEN_TS, GOLDEN_BODY)
    assert two.split(" ")[0] == GOLDEN_SIGNATURE
    assert two.count("v1,") == 2


def test_signature_header_drops_duplicate_keys() -> None:
    header = signature_header([GOLDEN_KEY, GOLDEN_KEY], GOLDEN_ID, GOLDEN_TS, GOLDEN_BODY)
    assert header == GOLDEN_SIGNATURE


def test_signature_header_requires_a_secret() -> None:
    with pytest.raises(ValueError, match="at least one secret"):
        signature_header([], GOLDEN_ID, GOLDEN_TS, GOLDEN_BODY)


# --- secrets ---------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [24, 25, 32, 48, 63, 64])
def test_parse_secret_accepts_sizes_in_range(size: int) -> None:
    key = bytes((i * 7) % 256 for i in range(size))
    assert parse_secret("whsec_" + base64.b64encode(key).decode()) == key


def test_parse_secret_accepts_unpadded_base64() -> None:
    key = bytes(range(25))  # 25 bytes -> two '=' of padding
    padded = base64.b64encode(key).decode()
    assert padded.endswith("==")
    assert parse_secret("whsec_" + padded.rstrip("=")) == key


@pytest.mark.parametrize(
    ("secret", "message"),
    [
        ("", "must start with 'whsec_'"),
        ("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=", "must start with 'whsec_'"),
        ("WHSEC_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=", "must start with 'whsec_'"),
        ("whsec_", "base64"),
        ("whsec_" + base64.b64encode(b"x" * 23).decode(), "got 23"),
        ("whsec_" + base64.b64encode(b"x" * 65).decode(), "got 65"),
        ("whsec_" + base64.b64encode(b"x" * 200).decode(), "base64 of 24..64"),
        ("whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8!", "base64"),
        ("whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh-_", "base64"),
        ("whsec_AAECAwQFBgcICQoLDA0O DxAREhMUFRYXGBkaGxwdHh8=", "base64"),
        ("whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n", "base64"),
        ("whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8===", "base64"),
        ("whsec_A", "base64"),
    ],
)
def test_parse_secret_rejects(secret: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_secret(secret)


def test_parse_secret_rejects_non_string() -> None:
    with pytest.raises(ValueError):
        parse_secret(b"whsec_abc")  # type: ignore[arg-type]


def test_generate_secret_uses_injected_randomness() -> None:
    requested: list[int] = []

    def fake_random(n: int) -> bytes:
        requested.append(n)
        return bytes(range(n))

    assert generate_secret(fake_random) == GOLDEN_SECRET
    assert requested == [32]


def test_generate_secret_defaults_are_fresh_and_valid() -> None:
    secrets = {generate_secret() for _ in range(20)}
    assert len(secrets) == 20
    assert all(len(parse_secret(s)) == 32 for s in secrets)


def test_generate_secret_rejects_short_randomness() -> None:
    with pytest.raises(ValueError, match="returned 16 bytes"):
        generate_secret(lambda n: b"\x00" * 16)


def test_format_secret_rejects_bad_length() -> None:
    with pytest.raises(ValueError):
        format_secret(b"\x00" * 23)
    with pytest.raises(ValueError):
        format_secret(b"\x00" * 65)


# --- rotation ---------------------------------------------------------------------------------

NOW = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)


def test_active_secrets_current_only() -> None:
    assert active_secrets(GOLDEN_SECRET, None, None, NOW) == [GOLDEN_KEY]


def test_active_secrets_within_grace_current_first() -> None:
    keys = active_secrets(OTHER_SECRET, GOLDEN_SECRET, NOW + timedelta(seconds=1), NOW)
    assert keys == [OTHER_KEY, GOLDEN_KEY]


@pytest.mark.parametrize("expires_offset_s", [0, -1, -86400])
def test_active_secrets_after_grace(expires_offset_s: int) -> None:
    expires = NOW + timedelta(seconds=expires_offset_s)
    assert active_secrets(OTHER_SECRET, GOLDEN_SECRET, expires, NOW) == [OTHER_KEY]


def test_active_secrets_previous_without_expiry_is_ignored() -> None:
    assert active_secrets(OTHER_SECRET, GOLDEN_SECRET, None, NOW) == [OTHER_KEY]


def test_active_secrets_previous_equal_to_current_signs_once() -> None:
    keys = active_secrets(GOLDEN_SECRET, GOLDEN_SECRET, NOW + timedelta(hours=1), NOW)
    assert keys == [GOLDEN_KEY]


def test_active_secrets_rejects_malformed_secrets() -> None:
    with pytest.raises(ValueError):
        active_secrets("nope", None, None, NOW)
    with pytest.raises(ValueError):
        active_secrets(GOLDEN_SECRET, "whsec_short", NOW + timedelta(hours=1), NOW)
