"""Pure pieces of the hardening: canonical endpoint hosts, the port policy, HTTP settings,
the body budget, protocol-error classification, the rate-limited log, log redaction."""

from __future__ import annotations

import logging

import pytest
from aiohttp.http_exceptions import BadHttpMessage, BadHttpMethod, LineTooLong

from shared.config_http import (
    FD_RESERVE,
    effective_max_connections,
    load_denied_target_ports,
    load_http_settings,
)
from shared.core.errors import ConfigError
from shared.core.ssrf import (
    DEFAULT_DENIED_TARGET_PORTS,
    canonical_endpoint_url,
    connect_block_reason,
    parse_port_set,
)
from shared.http.limits import BodyBudget, BodyBudgetExceeded, BodyReservation
from shared.http.protocol import _RateLimitedLog, classify_protocol_error
from shared.logging import redact

FULL_WIDTH = "\uff11\uff12\uff17.\uff10.\uff10.\uff11"
IDEOGRAPHIC = "127\u30020\u30020\u30021"


@pytest.mark.parametrize(("url", "canonical"), [
    (f"http://{FULL_WIDTH}:19500/x", "http://127.0.0.1:19500/x"),
    (f"http://{IDEOGRAPHIC}:19500/x?a=1", "http://127.0.0.1:19500/x?a=1"),
    ("HTTPS://Example.COM/Path/%7E?Q=1", "https://example.com/Path/%7E?Q=1"),
    ("http://0x7f.1/a", "http://127.0.0.1/a"),
    ("http://2130706433:80/", "http://127.0.0.1:80/"),
    ("http://b\u00fccher.de:8443/w", "http://xn--bcher-kva.de:8443/w"),
    ("http://[::FFFF:127.0.0.1]/", "http://[::ffff:7f00:1]/"),
    ("https://hooks.example.com", "https://hooks.example.com"),
])
def test_canonical_endpoint_url(url: str, canonical: str) -> None:
    assert canonical_endpoint_url(url) == canonical
    assert canonical_endpoint_url(canonical) == canonical  # idempotent


@pytest.mark.parametrize("url", [
    f"http://{FULL_WIDTH}:19500/x", f"http://{IDEOGRAPHIC}/", "http://127.1/",
    "http://0x7f000001/", "http://[::ffff:127.0.0.1]/", "http://LOCALHOST./",
    "http://a.localhost/", "http://10.1.2.3/", "http://[fe80::1%25eth0]/",
])
def test_connect_block_reason_refuses_private_spellings(url: str) -> None:
    assert connect_block_reason(url) is not None
    assert connect_block_reason(url, allow_private=True) is None


def test_connect_block_reason_ports_apply_whatever_the_private_setting() -> None:
    denied = parse_port_set(DEFAULT_DENIED_TARGET_PORTS)
    for port in (22, 25, 6379, 5432):
        url = f"http://203.0.113.10:{port}/"
        reason = connect_block_reason(url, denied, allow_private=True)
        assert reason is not None and f"port {port}" in reason
    assert connect_block_reason("http://93.184.215.14:8443/", denied) is None
    assert connect_block_reason("https://93.184.215.14/", denied) is None


def test_parse_port_set() -> None:
    assert parse_port_set("22, 25,6000-6002") == {22, 25, 6000, 6001, 6002}
    assert parse_port_set("none") == frozenset()
    defaults = parse_port_set(DEFAULT_DENIED_TARGET_PORTS)
    assert {22, 25, 6379, 3306, 5432, 11211} <= defaults
    assert not {80, 443, 8080, 8443} & defaults
    for bad in ("", "x", "0", "65536", "10-5", "1-", "\u0665"):
        with pytest.raises(ValueError):
            parse_port_set(bad)


def test_denied_target_ports_setting() -> None:
    assert load_denied_target_ports({}) == parse_port_set(DEFAULT_DENIED_TARGET_PORTS)
    assert load_denied_target_ports({"POSTWIRE_DENIED_TARGET_PORTS": "none"}) == frozenset()
    with pytest.raises(ConfigError, match="POSTWIRE_DENIED_TARGET_PORTS"):
        load_denied_target_ports({"POSTWIRE_DENIED_TARGET_PORTS": "ssh"})


def test_http_settings_defaults_and_errors() -> None:
    settings = load_http_settings({}, "127.0.0.1")
    assert (settings.idle_timeout_s, settings.header_timeout_s, settings.body_timeout_s) == (
        60.0, 10.0, 60.0)
    assert settings.metrics_port is None and settings.metrics_host is None
    moved = load_http_settings({"POSTWIRE_METRICS_PORT": "9100"}, "10.0.0.5")
    assert (moved.metrics_host, moved.metrics_port) == ("10.0.0.5", 9100)
    for name, value in [("POSTWIRE_HTTP_IDLE_TIMEOUT_S", "0"),
                        ("POSTWIRE_HTTP_HEADER_TIMEOUT_S", "soon"),
                        ("POSTWIRE_HTTP_MAX_CONNECTIONS", "3"),
                        ("POSTWIRE_METRICS_PORT", "70000"),
                        ("POSTWIRE_METRICS_HOST", "metrics.internal")]:
        env = {name: value, "POSTWIRE_METRICS_PORT": "9100"} if "HOST" in name else {
            name: value}
        with pytest.raises(ConfigError, match=name):
            load_http_settings(env, "127.0.0.1")


def test_max_connections_leave_file_descriptors_spare() -> None:
    assert effective_max_connections(4096, 1024) == 1024 - FD_RESERVE
    assert effective_max_connections(100, 1024) == 100
    assert effective_max_connections(4096, None) == 4096
    assert effective_max_connections(4096, 64) == 16


def test_body_budget_admits_a_lone_request_and_refuses_a_second() -> None:
    budget = BodyBudget(1000)
    first, second = BodyReservation(budget), BodyReservation(budget)
    first.grow(900)
    with pytest.raises(BodyBudgetExceeded):
        second.grow(200)
    second.grow(100)  # fits exactly
    first.release()
    second.grow(5000)  # alone now: admitted over the budget
    assert budget.in_flight == 5100 and budget.refused == 1
    second.release()
    assert budget.in_flight == 0


@pytest.mark.parametrize(("exc", "reason"), [
    (LineTooLong(b"x" * 100, 8190), "line_too_long"),
    (BadHttpMessage("Too many headers received"), "too_many_headers"),
    (BadHttpMethod("\x01"), "bad_method"),
    (BadHttpMessage("Invalid header value char: b'secret\\x00'"), "bad_request"),
    (None, "internal"),
])
def test_protocol_errors_are_classified_without_their_input(
        exc: BaseException | None, reason: str) -> None:
    label, message = classify_protocol_error(exc, 400 if exc is not None else 500)
    assert label == reason
    assert "secret" not in message and "xxx" not in message


def test_rate_limited_log_writes_one_line_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    limited = _RateLimitedLog(interval_s=3600)
    with caplog.at_level(logging.WARNING, logger="postwire.http"):
        for _ in range(1000):
            limited.warning("refused", reason="bad_request")
    assert len(caplog.records) == 1


@pytest.mark.parametrize(("line", "leak"), [
    ("Authorization: Bearer sk_live_abc123", "sk_live_abc123"),
    ('{"msg": "bad header b\'Bearer test-key\\\\x00\'"}', "test-key"),
    ("secret=whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw end", "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
])
def test_redact_masks_credentials(line: str, leak: str) -> None:
    assert leak not in redact(line)
    assert "[redacted]" in redact(line)
