"""Address rules, host-literal parsing and endpoint URL validation (shared.core.ssrf)."""

from __future__ import annotations

import ipaddress
import socket

import pytest

from shared.core.ssrf import (
    MAX_URL_LENGTH,
    check_url_host,
    forbidden_reason,
    is_forbidden_address,
    parse_host_literal,
    validate_endpoint_url,
)

pytestmark = pytest.mark.unit

FORBIDDEN = [
    # IPv4
    "0.0.0.0", "0.1.2.3", "0.255.255.255",
    "10.0.0.1", "10.255.255.255",
    "100.64.0.1", "100.127.255.255",
    "127.0.0.1", "127.255.255.254",
    "169.254.0.1", "169.254.169.254",
    "172.16.0.1", "172.31.255.255",
    "192.0.0.1", "192.0.0.170", "192.0.2.1", "192.88.99.1",
    "192.168.0.1", "192.168.255.255",
    "198.18.0.1", "198.19.255.255", "198.51.100.1", "203.0.113.1",
    "224.0.0.1", "239.255.255.250",
    "240.0.0.1", "254.255.255.255", "255.255.255.255",
    # IPv6
    "::", "::1",
    "::ffff:127.0.0.1", "::ffff:10.0.0.1", "::ffff:169.254.169.254", "::ffff:0.0.0.0",
    "::ffff:100.64.0.1", "::ffff:255.255.255.255",
    "::127.0.0.1", "::8.8.8.8",  # IPv4-compatible (deprecated)
    "64:ff9b::7f00:1", "64:ff9b::a00:1", "64:ff9b::a9fe:a9fe",  # NAT64 of private
    "64:ff9b:1::808:808",  # local-use NAT64
    "2002:7f00:1::", "2002:a00:1::1", "2002:c0a8:101::1", "2002:a9fe:a9fe::",  # 6to4
    "100::1",
    "fc00::1", "fd12:3456:789a::1",
    "fe80::1", "febf:ffff::1", "fec0::1",
    "ff02::1", "ff0e::1", "ff05::1:3",
    "2001:db8::1", "2001::1", "2001:0:4136:e378:8000:63bf:3fff:fdd2", "2001:10::1",
    "3fff::1",
    "4000::1", "e000::1", "1::1",
    "fe80::1%eth0", "2606:4700:4700::1111%eth0",
]

ALLOWED = [
    "8.8.8.8", "1.1.1.1", "93.184.216.34", "11.0.0.1", "126.255.255.255", "128.0.0.1",
    "100.63.255.255", "100.128.0.0", "172.15.255.255", "172.32.0.0",
    "192.167.255.255", "192.169.0.1", "198.17.255.255", "198.20.0.0", "223.255.255.255",
    "2606:4700:4700::1111", "2001:4860:4860::8888", "2a00:1450:4001::200e", "2001:200::1",
    "::ffff:8.8.8.8", "64:ff9b::808:808", "2002:808:808::1",
]


@pytest.mark.parametrize("address", FORBIDDEN)
def test_forbidden_addresses(address: str) -> None:
    ip = ipaddress.ip_address(address)
    assert is_forbidden_address(ip) is True
    assert forbidden_reason(ip)


@pytest.mark.parametrize("address", ALLOWED)
def test_allowed_addresses(address: str) -> None:
    ip = ipaddress.ip_address(address)
    assert is_forbidden_address(ip) is False
    assert forbidden_reason(ip) is None


@pytest.mark.parametrize(
    ("address", "label"),
    [
        ("127.0.0.1", "loopback"),
        ("169.254.169.254", "link-local"),
        ("10.1.2.3", "private"),
        ("100.64.0.1", "shared (CGNAT)"),
        ("198.18.0.1", "benchmarking"),
        ("255.255.255.255", "broadcast"),
        ("240.0.0.1", "reserved"),
        ("224.0.0.1", "multicast"),
        ("::1", "loopback"),
        ("::", "unspecified"),
        ("fe80::1", "link-local"),
        ("fd00::1", "unique-local (private)"),
        ("::ffff:10.0.0.1", "private (embedded IPv4 10.0.0.1)"),
        ("2002:7f00:1::", "loopback (embedded IPv4 127.0.0.1)"),
        ("64:ff9b::a9fe:a9fe", "link-local (embedded IPv4 169.254.169.254)"),
        ("2606:4700::1%eth0", "scoped (zone id)"),
    ],
)
def test_forbidden_reason_names_the_range(address: str, label: str) -> None:
    assert forbidden_reason(ipaddress.ip_address(address)) == label


# --- parse_host_literal -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("8.8.8.8", "8.8.8.8"),
        ("2130706433", "127.0.0.1"),
        ("4294967295", "255.255.255.255"),
        ("0x7f000001", "127.0.0.1"),
        ("0X7F000001", "127.0.0.1"),
        ("0x7f.0.0.1", "127.0.0.1"),
        ("0x7f.0x0.0x0.0x1", "127.0.0.1"),
        ("0x7f.1", "127.0.0.1"),
        ("0177.0.0.1", "127.0.0.1"),
        ("0177.0000.0000.0001", "127.0.0.1"),
        ("017700000001", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("127.0.1", "127.0.0.1"),
        ("10.1", "10.0.0.1"),
        ("192.168.257", "192.168.1.1"),
        ("169.254.43518", "169.254.169.254"),
        ("0", "0.0.0.0"),
        ("0x", "0.0.0.0"),
        ("127.0.0.1.", "127.0.0.1"),
        ("[::1]", "::1"),
        ("::1", "::1"),
        ("[::ffff:127.0.0.1]", "::ffff:7f00:1"),
        ("[0:0:0:0:0:ffff:7f00:1]", "::ffff:7f00:1"),
        ("::FFFF:7F00:1", "::ffff:7f00:1"),
        ("[fe80::1%25eth0]", "fe80::1%eth0"),
        ("fe80::1%25eth0", "fe80::1%eth0"),
        ("[2606:4700::1111]", "2606:4700::1111"),
    ],
)
def test_parse_host_literal(host: str, expected: str) -> None:
    assert parse_host_literal(host) == ipaddress.ip_address(expected)


@pytest.mark.parametrize(
    "host",
    [
        "", "example.com", "localhost", "127.0.0.1.example.com", "0x7f000001.example.com",
        "4294967296", "0x100000000", "256.0.0.1", "1.2.3.256", "1.2.65536", "1.16777216",
        "1.2.3.4.5", "127..1", ".127.0.0.1", "127.0.0.1..", "08.0.0.1", "0x7g.0.0.1",
        "1.2.3.-4", "+1.2.3.4", "1_0.0.0.1", "\u0661\u0662\u0667.0.0.1", " 127.0.0.1",
        "127.0.0.1 ", "1e3", "[::1", "::1]", "[127.0.0.1]", "[example.com]", "[::1]:80",
        "[]", ":::", "1" * 300,
    ],
)
def test_parse_host_literal_rejects_non_literals(host: str) -> None:
    assert parse_host_literal(host) is None


@pytest.mark.parametrize(
    "host",
    ["127.0.0.1", "2130706433", "0x7f000001", "0x7f.1", "0177.0.0.1", "017700000001",
     "127.1", "127.0.1", "192.168.257", "0xffffffff", "0", "10.0x10.010.1",
     "00000000000000000000000000000127.0.0.1"],
)
def test_parse_host_literal_agrees_with_libc_inet_aton(host: str) -> None:
    libc = ipaddress.IPv4Address(socket.inet_aton(host))
    assert parse_host_literal(host) == libc


# --- check_url_host ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "resolved"),
    [
        ("https://example.com/hook", ["93.184.216.34"]),
        ("https://example.com/hook", ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"]),
        ("http://8.8.8.8/", []),
        ("http://[2606:4700::1111]:8443/", []),
        ("http://134744072/", []),  # 8.8.8.8 as a decimal literal
        ("http://[::ffff:8.8.8.8]/", ["::ffff:8.8.8.8"]),
    ],
)
def test_check_url_host_allows_public(url: str, resolved: list[str]) -> None:
    assert check_url_host(url, resolved) is None


@pytest.mark.parametrize(
    ("url", "resolved", "fragment"),
    [
        ("http://127.0.0.1/", [], "loopback"),
        ("http://2130706433/", [], "loopback"),
        ("http://0x7f.1/", [], "loopback"),
        ("http://0177.0.0.1:8080/", [], "loopback"),
        ("http://0/", [], "this-network"),
        ("http://[::1]/", [], "loopback"),
        ("http://[::ffff:127.0.0.1]/", [], "loopback"),
        ("http://[::ffff:a9fe:a9fe]/", [], "link-local"),
        ("http://[fe80::1%25eth0]/", [], "link-local"),
        ("http://169.254.169.254/latest/meta-data/", [], "link-local"),
        ("http://localhost:8080/", ["127.0.0.1"], "loopback"),
        ("http://LOCALHOST./", ["8.8.8.8"], "loopback name"),
        ("http://api.localhost/", [], "loopback name"),
        ("https://example.com/", ["93.184.216.34", "10.0.0.1"], "10.0.0.1"),
        ("https://example.com/", ["::1"], "::1"),
        ("https://example.com/", ["fe80::1%eth0"], "link-local"),
        ("https://example.com/", ["::ffff:169.254.169.254"], "link-local"),
        ("https://example.com/", ["100.64.1.1"], "CGNAT"),
        ("https://example.com/", ["not-an-ip"], "not an IP address"),
        ("https://example.com/", [], "did not resolve"),
        ("http://8.8.8.8/", ["10.0.0.1"], "10.0.0.1"),
        ("http://[::1/", [], "not a valid URL"),
        ("http:///path", [], "no host"),
    ],
)
def test_check_url_host_refuses(url: str, resolved: list[str], fragment: str) -> None:
    reason = check_url_host(url, resolved)
    assert reason is not None
    assert fragment in reason


# --- validate_endpoint_url --------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "https://example.com",
        "https://example.com/",
        "https://example.com/webhooks?account=1&x=y",
        "http://example.com:8080/a/b",
        "HTTPS://EXAMPLE.COM/Hook",
        "https://sub.example.co.uk./hook",
        "https://example.com:/hook",
        "https://example.com:443/",
        "https://my_host.internal/hook",
        "https://b\u00fccher.de/hook",
        "https://xn--bcher-kva.de/hook",
        "https://example.com/path%20with%20escapes",
        "http://127.0.0.1:9000/hook",  # private targets are check_url_host's business
        "http://0x7f.1/",
        "http://[::1]:8080/",
        "http://[2606:4700::1111]/",
        "http://[fe80::1%25eth0]/",
        "https://example.com/" + "a" * (MAX_URL_LENGTH - len("https://example.com/")),
    ],
)
def test_validate_endpoint_url_accepts(url: str) -> None:
    assert validate_endpoint_url(url) is None


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("", "required"),
        ("https://example.com/" + "a" * (MAX_URL_LENGTH - 19), "at most 2048"),
        ("example.com/hook", "absolute"),
        ("/hook", "absolute"),
        ("//example.com/hook", "absolute"),
        ("https:example.com", "absolute"),
        ("https:/example.com", "absolute"),
        ("ftp://example.com/", "http or https"),
        ("javascript:alert(1)", "http or https"),
        ("file:///etc/passwd", "http or https"),
        ("ws://example.com/", "http or https"),
        ("gopher://127.0.0.1:6379/_INFO", "http or https"),
        ("https://user:pass@example.com/", "credentials"),
        ("https://user@example.com/", "credentials"),
        ("https://@example.com/", "credentials"),
        ("https://example.com/#frag", "fragment"),
        ("https://example.com/#", "fragment"),
        ("https://exa mple.com/", "whitespace"),
        ("https://example.com/a b", "whitespace"),
        ("https://example.com/\n", "whitespace"),
        ("https://example.com/\t", "whitespace"),
        ("https://example.com/\x00", "control"),
        ("https://example.com/\x7f", "control"),
        ("https://example.com:0/", "port"),
        ("https://example.com:70000/", "port"),
        ("https://example.com:abc/", "port"),
        ("https://example.com:-1/", "port"),
        ("http:///hook", "host"),
        ("https://:443/", "host"),
        ("https://[::1/", "not a valid URL"),
        ("https://[example.com]/", "url"),
        ("https://1.2.3.999/", "IPv4"),
        ("https://256.0.0.1/", "IPv4"),
        ("https://08.0.0.1/", "IPv4"),
        ("https://example.123/", "IPv4"),
        ("https://example..com/", "host name"),
        ("https://exa%41mple.com/", "host name"),
        ("https://ex*ample.com/", "host name"),
        ("https://ex!ample.com/", "host name"),
        ("https://" + "a" * 64 + ".com/", "host name"),
        ("https://" + ".".join(["abcdefghi"] * 26) + ".com/", "host name"),
    ],
)
def test_validate_endpoint_url_refuses(url: str, fragment: str) -> None:
    message = validate_endpoint_url(url)
    assert message is not None
    assert fragment in message
    assert message.startswith("url")


def test_validate_endpoint_url_refuses_non_string() -> None:
    assert validate_endpoint_url(None) == "url is required"  # type: ignore[arg-type]
