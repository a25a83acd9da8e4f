"""Endpoint request validation and the SSRF guard at the API, with a fake resolver."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from shared.adapters.dns import ResolutionFailed
from shared.core.errors import InvalidRequest
from shared.endpoints.validation import (
    DEFAULT_GRACE_PERIOD_S,
    EndpointSpec,
    check_url_target,
    validate_create,
    validate_patch,
    validate_rotate,
)

URL = "https://hooks.example.com/in"


def secret_of(n: int) -> str:
    return "whsec_" + base64.b64encode(bytes(range(n))).decode()


def create(**fields: Any) -> EndpointSpec:
    return validate_create({"account_id": "acct_1", "url": URL, **fields})


def test_create_fills_defaults() -> None:
    spec = validate_create({"account_id": "acct_1", "url": URL})
    assert spec == EndpointSpec(account_id="acct_1", url=URL, event_types=("*",),
                                description=None, enabled=True, rate_limit_per_s=None,
                                max_in_flight=10, metadata={}, secret=None)


def test_create_keeps_every_field() -> None:
    secret = secret_of(24)
    spec = create(event_types=["invoice.*", "customer.created"], description="d" * 1024,
                  enabled=False, rate_limit_per_s=5, max_in_flight=1000,
                  metadata={"team": "billing"}, secret=secret)
    assert spec.event_types == ("invoice.*", "customer.created")
    assert spec.description == "d" * 1024
    assert spec.enabled is False
    assert (spec.rate_limit_per_s, spec.max_in_flight) == (5, 1000)
    assert spec.metadata == {"team": "billing"}
    assert spec.secret == secret


@pytest.mark.parametrize("account_id", ["a", "A-z_0" * 12 + "abcd", "acct-1_X"])
def test_account_id_accepted(account_id: str) -> None:
    assert validate_create({"account_id": account_id, "url": URL}).account_id == account_id


INVALID_CREATE: list[tuple[dict[str, Any], str]] = [
    ({"url": URL}, "account_id"),
    ({"account_id": "acct_1"}, "url"),
    ({"account_id": "", "url": URL}, "account_id"),
    ({"account_id": "a" * 65, "url": URL}, "account_id"),
    ({"account_id": "acct 1", "url": URL}, "account_id"),
    ({"account_id": "acct\n", "url": URL}, "account_id"),
    ({"account_id": 7, "url": URL}, "account_id"),
    ({"account_id": None, "url": URL}, "account_id"),
    ({"account_id": "a", "url": 5}, "url"),
    ({"account_id": "a", "url": None}, "url"),
    ({"account_id": "a", "url": "ftp://example.com/"}, "url"),
    ({"account_id": "a", "url": "/relative/path"}, "url"),
    ({"account_id": "a", "url": "example.com/hook"}, "url"),
    ({"account_id": "a", "url": "https://example.com/" + "a" * 2030}, "url"),
    ({"account_id": "a", "url": "https://"}, "url"),
    ({"account_id": "a", "url": "https://exa mple.com/"}, "url"),
    ({"account_id": "a", "url": URL, "event_types": []}, "event_types"),
    ({"account_id": "a", "url": URL, "event_types": "invoice.paid"}, "event_types"),
    ({"account_id": "a", "url": URL, "event_types": None}, "event_types"),
    ({"account_id": "a", "url": URL, "event_types": ["a"] * 0 + [f"t{i}" for i in range(101)]},
     "event_types"),
    ({"account_id": "a", "url": URL, "event_types": ["ok", 5]}, "event_types[1]"),
    ({"account_id": "a", "url": URL, "event_types": ["in*voice"]}, "event_types[0]"),
    ({"account_id": "a", "url": URL, "event_types": ["a b"]}, "event_types[0]"),
    ({"account_id": "a", "url": URL, "event_types": [""]}, "event_types[0]"),
    ({"account_id": "a", "url": URL, "event_types": ["x.*", "x.*"]}, "event_types[1]"),
    ({"account_id": "a", "url": URL, "description": 5}, "description"),
    ({"account_id": "a", "url": URL, "description": "d" * 1025}, "description"),
    ({"account_id": "a", "url": URL, "enabled": "true"}, "enabled"),
    ({"account_id": "a", "url": URL, "enabled": 1}, "enabled"),
    ({"account_id": "a", "url": URL, "enabled": None}, "enabled"),
    ({"account_id": "a", "url": URL, "rate_limit_per_s": 0}, "rate_limit_per_s"),
    ({"account_id": "a", "url": URL, "rate_limit_per_s": -3}, "rate_limit_per_s"),
    ({"account_id": "a", "url": URL, "rate_limit_per_s": 1.5}, "rate_limit_per_s"),
    ({"account_id": "a", "url": URL, "rate_limit_per_s": 10.0}, "rate_limit_per_s"),
    ({"account_id": "a", "url": URL, "rate_limit_per_s": True}, "rate_limit_per_s"),
    ({"account_id": "a", "url": URL, "rate_limit_per_s": "5"}, "rate_limit_per_s"),
    ({"account_id": "a", "url": URL, "rate_limit_per_s": 100_001}, "rate_limit_per_s"),
    ({"account_id": "a", "url": URL, "max_in_flight": 0}, "max_in_flight"),
    ({"account_id": "a", "url": URL, "max_in_flight": 1001}, "max_in_flight"),
    ({"account_id": "a", "url": URL, "max_in_flight": None}, "max_in_flight"),
    ({"account_id": "a", "url": URL, "max_in_flight": True}, "max_in_flight"),
    ({"account_id": "a", "url": URL, "max_in_flight": 2.0}, "max_in_flight"),
    ({"account_id": "a", "url": URL, "secret": "abc"}, "secret"),
    ({"account_id": "a", "url": URL, "secret": 5}, "secret"),
    ({"account_id": "a", "url": URL, "secret": None}, "secret"),
    ({"account_id": "a", "url": URL, "secret": secret_of(23)}, "secret"),
    ({"account_id": "a", "url": URL, "secret": secret_of(65)}, "secret"),
    ({"account_id": "a", "url": URL, "secret": "whsec_!!!!" + "A" * 40}, "secret"),
    ({"account_id": "a", "url": URL, "metadata": ["a"]}, "metadata"),
    ({"account_id": "a", "url": URL, "metadata": "x"}, "metadata"),
    ({"account_id": "a", "url": URL, "metadata": {"k": 1}}, "metadata.k"),
    ({"account_id": "a", "url": URL, "metadata": {"k": None}}, "metadata.k"),
    ({"account_id": "a", "url": URL, "metadata": {"k": "v" * 513}}, "metadata.k"),
    ({"account_id": "a", "url": URL, "metadata": {"k" * 65: "v"}}, "metadata"),
    ({"account_id": "a", "url": URL, "metadata": {"": "v"}}, "metadata"),
    ({"account_id": "a", "url": URL, "metadata": {"k": "a\x00b"}}, "metadata.k"),
    ({"account_id": "a", "url": URL, "metadata": {"a\x00": "v"}}, "metadata"),
    ({"account_id": "a", "url": URL, "metadata": {f"k{i}": "v" for i in range(51)}},
     "metadata"),
    ({"account_id": "a", "url": URL, "colour": "blue"}, "colour"),
    ({"account_id": "a", "url": URL, "status": "enabled"}, "status"),
]


@pytest.mark.parametrize(("body", "param"), INVALID_CREATE)
def test_create_rejects(body: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        validate_create(body)
    assert info.value.param == param
    assert info.value.status == 400
    assert info.value.message


def test_create_accepts_boundaries() -> None:
    spec = create(event_types=[f"t{i}" for i in range(100)], rate_limit_per_s=1,
                  max_in_flight=1, metadata={f"k{i}": "v" * 512 for i in range(50)},
                  secret=secret_of(64), url="https://example.com/" + "a" * 2028)
    assert len(spec.event_types) == 100
    assert len(spec.url) == 2048
    assert create(description=None, metadata=None, rate_limit_per_s=None).metadata == {}


def test_patch_returns_only_changed_fields() -> None:
    changes = validate_patch({"url": URL, "event_types": ["a.*"], "enabled": False,
                              "description": None, "rate_limit_per_s": None,
                              "max_in_flight": 3, "metadata": {"a": "b"}})
    assert changes == {"url": URL, "event_types": ["a.*"], "enabled": False,
                       "description": None, "rate_limit_per_s": None, "max_in_flight": 3,
                       "metadata": {"a": "b"}}
    assert validate_patch({}) == {}


@pytest.mark.parametrize(("body", "param"), [
    ({"account_id": "other"}, "account_id"),
    ({"secret": secret_of(32)}, "secret"),
    ({"url": "gopher://x/"}, "url"),
    ({"enabled": "no"}, "enabled"),
    ({"max_in_flight": 0}, "max_in_flight"),
    ({"event_types": []}, "event_types"),
    ({"id": "ep_x"}, "id"),
    ({"created_at": "2026-01-01T00:00:00Z"}, "created_at"),
])
def test_patch_rejects(body: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        validate_patch(body)
    assert info.value.param == param


def test_rotate_grace_period() -> None:
    assert validate_rotate({}) == DEFAULT_GRACE_PERIOD_S == 86400
    assert validate_rotate({"grace_period_s": 0}) == 0
    assert validate_rotate({"grace_period_s": 604800}) == 604800


@pytest.mark.parametrize(("body", "param"), [
    ({"grace_period_s": -1}, "grace_period_s"),
    ({"grace_period_s": 604801}, "grace_period_s"),
    ({"grace_period_s": "60"}, "grace_period_s"),
    ({"grace_period_s": 1.5}, "grace_period_s"),
    ({"grace_period_s": True}, "grace_period_s"),
    ({"grace_period_s": None}, "grace_period_s"),
    ({"grace": 60}, "grace"),
])
def test_rotate_rejects(body: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        validate_rotate(body)
    assert info.value.param == param


class FakeResolver:
    """Answers from a table; records every lookup; unknown names do not resolve."""

    def __init__(self, table: dict[str, list[str]], temporary: bool = False) -> None:
        self.table = table
        self.temporary = temporary
        self.calls: list[tuple[str, int]] = []

    async def __call__(self, host: str, port: int) -> list[str]:
        self.calls.append((host, port))
        if host not in self.table:
            raise ResolutionFailed(f"host {host!r} does not resolve", temporary=self.temporary)
        return self.table[host]


REFUSED_LITERALS = [
    "http://127.0.0.1/", "http://127.0.0.1:8080/x", "http://10.1.2.3/", "http://172.16.0.1/",
    "http://192.168.1.1/", "http://169.254.169.254/latest/meta-data/", "http://0.0.0.0/",
    "http://[::1]/", "http://[::]/", "http://[::ffff:10.0.0.1]/", "http://[::ffff:127.0.0.1]/",
    "http://[fe80::1]/", "http://[fd00::1]/", "http://224.0.0.1/", "http://240.0.0.1/",
    "http://2130706433/", "http://0x7f000001/", "http://0177.0.0.1/", "http://127.1/",
    "http://0x7f.0.0.1/", "http://100.64.0.1/", "https://[ff02::1]:8443/",
]


@pytest.mark.parametrize("url", [*REFUSED_LITERALS, "http://localhost/", "http://LocalHost./x",
                                 "https://hooks.localhost:8443/"])
async def test_private_literals_refused_without_resolving(url: str) -> None:
    resolver = FakeResolver({})
    with pytest.raises(InvalidRequest) as info:
        await check_url_target(url, allow_private=False, resolve=resolver)
    assert info.value.param == "url"
    assert "POSTWIRE_ALLOW_PRIVATE_TARGETS" in info.value.message
    assert resolver.calls == []


@pytest.mark.parametrize("url", [*REFUSED_LITERALS, "http://localhost/", "http://nowhere.test/"])
async def test_everything_allowed_with_private_targets(url: str) -> None:
    resolver = FakeResolver({})
    await check_url_target(url, allow_private=True, resolve=resolver)
    assert resolver.calls == []


@pytest.mark.parametrize("url", ["http://93.184.216.34/", "https://[2606:2800:220:1::]/h",
                                 "http://8.8.8.8:8080/"])
async def test_public_literals_accepted(url: str) -> None:
    resolver = FakeResolver({})
    await check_url_target(url, allow_private=False, resolve=resolver)
    assert resolver.calls == []


async def test_names_are_resolved_with_the_default_port() -> None:
    resolver = FakeResolver({"hooks.test": ["93.184.216.34", "2606:2800:220:1::"]})
    await check_url_target("https://hooks.test/x", allow_private=False, resolve=resolver)
    await check_url_target("http://hooks.test/x", allow_private=False, resolve=resolver)
    await check_url_target("http://hooks.test:9000/x", allow_private=False, resolve=resolver)
    assert resolver.calls == [("hooks.test", 443), ("hooks.test", 80), ("hooks.test", 9000)]


@pytest.mark.parametrize("addresses", [["10.0.0.5"], ["93.184.216.34", "127.0.0.1"],
                                       ["::1"], ["::ffff:192.168.0.1"], ["169.254.169.254"]])
async def test_name_resolving_to_any_private_address_is_refused(addresses: list[str]) -> None:
    resolver = FakeResolver({"internal.test": addresses})
    with pytest.raises(InvalidRequest) as info:
        await check_url_target("https://internal.test/", allow_private=False, resolve=resolver)
    assert info.value.param == "url"
    assert "internal.test" in info.value.message


@pytest.mark.parametrize("temporary", [False, True])
async def test_unresolvable_name_is_a_clear_400(temporary: bool) -> None:
    resolver = FakeResolver({}, temporary=temporary)
    with pytest.raises(InvalidRequest) as info:
        await check_url_target("https://nowhere.test/", allow_private=False, resolve=resolver)
    assert info.value.param == "url"
    assert "does not resolve" in info.value.message
    assert ("retry later" in info.value.message) is temporary
