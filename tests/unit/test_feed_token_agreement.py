"""The Python client derives the same feed token as the server, so a merchant holding only its
signing secret can open its catch-up feed (the client imports nothing of the services)."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from postwire.catchup import feed_token as client_feed_token
from shared.core.feed_token import feed_token as server_feed_token
from shared.core.feed_token import verify_feed_token
from shared.core.signing import parse_secret

SECRETS = st.binary(min_size=24, max_size=64).map(
    lambda raw: "whsec_" + base64.b64encode(raw).decode("ascii"))
ENDPOINT_IDS = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7e), min_size=1,
                       max_size=40).map(lambda tail: "ep_" + tail)


@given(SECRETS, ENDPOINT_IDS)
def test_client_and_server_derive_the_same_token(secret: str, endpoint_id: str) -> None:
    token = client_feed_token(endpoint_id, secret)
    assert token == server_feed_token(endpoint_id, secret)
    assert token.startswith("pwfeed_")
    assert verify_feed_token(token, endpoint_id, [parse_secret(secret)])
    assert not verify_feed_token(token, endpoint_id + "x", [parse_secret(secret)])


def test_a_malformed_secret_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        client_feed_token("ep_1", "whsec_not base64!")
