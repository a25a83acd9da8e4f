"""Dispatcher settings: defaults, and one clear error naming a bad variable."""

from __future__ import annotations

import pytest

from services.dispatcher.settings import FIVE_DAYS_S, load_dispatcher_settings
from shared.core.errors import ConfigError

BASE = {
    "POSTWIRE_DATABASE_URL": "postgresql://u@127.0.0.1:5432/db",
    "POSTWIRE_KAFKA_BOOTSTRAP": "127.0.0.1:9092",
}


def test_defaults() -> None:
    s = load_dispatcher_settings(BASE)
    assert s.port == 8081
    assert s.group_id == "postwire.dispatcher"
    assert s.backoff.auto_disable_after_s == FIVE_DAYS_S
    assert s.delivery_timeout_s == 15.0
    assert s.common.retry_schedule[0] == 0.0
    assert s.kafka_session_timeout_ms == 10000


def test_overrides() -> None:
    s = load_dispatcher_settings({**BASE, "POSTWIRE_TOPIC_PREFIX": "x.",
                                  "POSTWIRE_ENDPOINT_DISABLE_AFTER_S": "60",
                                  "POSTWIRE_CIRCUIT_COOLOFF_S": "2",
                                  "POSTWIRE_DISPATCHER_PORT": "9000"})
    assert (s.group_id, s.backoff.auto_disable_after_s, s.backoff.base_cooloff_s, s.port) == (
        "x.dispatcher", 60.0, 2.0, 9000)


@pytest.mark.parametrize("name,value", [
    ("POSTWIRE_DISPATCHER_PORT", "0"),
    ("POSTWIRE_ENDPOINT_DISABLE_AFTER_S", "soon"),
    ("POSTWIRE_DISPATCHER_CONCURRENCY", "-1"),
    ("POSTWIRE_RETRY_SCHEDULE", "0,x"),
    ("POSTWIRE_CIRCUIT_MAX_COOLOFF_S", "1"),
])
def test_a_bad_value_names_the_variable(name: str, value: str) -> None:
    env = {**BASE, name: value}
    if name == "POSTWIRE_CIRCUIT_MAX_COOLOFF_S":
        env["POSTWIRE_CIRCUIT_COOLOFF_S"] = "10"
    with pytest.raises(ConfigError, match=name):
        load_dispatcher_settings(env)
