"""Settings: every variable of the configuration validated with one clear line naming it."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import pytest

from services.dlq_replay.settings import load_admin_settings
from services.ingest.settings import load_ingest_settings
from shared.config import load_common, parse_admin_tokens, parse_api_keys
from shared.core.errors import ConfigError

BASE = {
    "POSTWIRE_DATABASE_URL": "postgresql://u@127.0.0.1:5432/db",
    "POSTWIRE_KAFKA_BOOTSTRAP": "127.0.0.1:9092",
}


def test_defaults_match_the_contract() -> None:
    s = load_common(BASE)
    assert s.topic_prefix == "postwire."
    assert s.host == "127.0.0.1"
    assert s.retry_schedule == (0, 5, 300, 1800, 7200, 18000, 36000, 36000)
    assert s.delivery_timeout_s == 15
    assert s.max_payload_bytes == 262144
    assert s.allow_private_targets is False


@pytest.mark.parametrize("name, value", [
    ("POSTWIRE_DATABASE_URL", "mysql://x"),
    ("POSTWIRE_KAFKA_BOOTSTRAP", "nohostport"),
    ("POSTWIRE_KAFKA_BOOTSTRAP", "h:99999"),
    ("POSTWIRE_RETRY_SCHEDULE", "1,-2"),
    ("POSTWIRE_RETRY_SCHEDULE", "a,b"),
    ("POSTWIRE_DELIVERY_TIMEOUT_S", "0"),
    ("POSTWIRE_MAX_PAYLOAD_BYTES", "12x"),
    ("POSTWIRE_ALLOW_PRIVATE_TARGETS", "maybe"),
    ("POSTWIRE_HOST", "not-an-ip"),
    ("POSTWIRE_TOPIC_PREFIX", "bad prefix!"),
])
def test_bad_values_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError) as excinfo:
        load_common({**BASE, name: value})
    assert name in str(excinfo.value)
    assert "\n" not in str(excinfo.value)


@pytest.mark.parametrize("missing", ["POSTWIRE_DATABASE_URL", "POSTWIRE_KAFKA_BOOTSTRAP"])
def test_required_variables(missing: str) -> None:
    env = {k: v for k, v in BASE.items() if k != missing}
    with pytest.raises(ConfigError, match=missing):
        load_common(env)


def test_api_keys_and_admin_tokens() -> None:
    assert parse_api_keys({"POSTWIRE_API_KEYS": "key-one-123, key-two-456"}) == (
        "key-one-123", "key-two-456")
    assert parse_admin_tokens({"POSTWIRE_ADMIN_TOKENS": "alice:tok-aaaa-1111"}) == (
        ("alice", "tok-aaaa-1111"),)
    for env in [{}, {"POSTWIRE_API_KEYS": "short"}]:
        with pytest.raises(ConfigError, match="POSTWIRE_API_KEYS"):
            parse_api_keys(env)
    for bad in ["", "notoken", "alice:", "bad name:tok-aaaa-1111"]:
        with pytest.raises(ConfigError, match="POSTWIRE_ADMIN_TOKENS"):
            parse_admin_tokens({"POSTWIRE_ADMIN_TOKENS": bad})


@pytest.mark.parametrize("loader", [load_ingest_settings, load_admin_settings])
def test_a_secret_that_is_both_api_key_and_admin_token_is_refused(
        loader: Callable[[Mapping[str, str]], object]) -> None:
    env = {**BASE, "POSTWIRE_API_KEYS": "key-one-1234,shared-secret-1",
           "POSTWIRE_ADMIN_TOKENS": "ops:shared-secret-1"}
    with pytest.raises(ConfigError, match="POSTWIRE_API_KEYS and POSTWIRE_ADMIN_TOKENS"):
        loader(env)
    loader({**env, "POSTWIRE_ADMIN_TOKENS": "ops:another-secret-2"})  # distinct: fine
    loader({**env, "POSTWIRE_ADMIN_TOKENS": "not a pair"} if loader is load_ingest_settings
           else {**env, "POSTWIRE_API_KEYS": "x"})  # the other service's bad value is its own
