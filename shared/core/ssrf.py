"""Which addresses a webhook may be sent to, and which endpoint URLs are well formed.

Pure rules only: DNS resolution happens in the adapters, which pass the resolved addresses to
:func:`check_url_host` (at endpoint creation and again before every connection, so a name that
re-binds to a private address is still refused). Host literals are read the way browsers, curl
and libc read them, so ``http://0x7f.1/`` or ``http://2130706433/`` cannot sneak past as names.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from urllib.parse import urlsplit

from yarl import URL

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

MAX_URL_LENGTH = 2048

_V4_RANGES: tuple[tuple[ipaddress.IPv4Network, str], ...] = tuple(
    (ipaddress.IPv4Network(net), label)
    for net, label in (
        ("0.0.0.0/8", "this-network"),
        ("10.0.0.0/8", "private"),
        ("100.64.0.0/10", "shared (CGNAT)"),
        ("127.0.0.0/8", "loopback"),
        ("169.254.0.0/16", "link-local"),
        ("172.16.0.0/12", "private"),
        ("192.0.0.0/24", "IETF protocol assignment"),
        ("192.0.2.0/24", "documentation"),
        ("192.88.99.0/24", "6to4 relay anycast"),
        ("192.168.0.0/16", "private"),
        ("198.18.0.0/15", "benchmarking"),
        ("198.51.100.0/24", "documentation"),
        ("203.0.113.0/24", "documentation"),
        ("224.0.0.0/4", "multicast"),
        ("255.255.255.255/32", "broadcast"),
        ("240.0.0.0/4", "reserved"),
    )
)

_V6_GLOBAL_UNICAST = ipaddress.IPv6Network("2000::/3")
_V6_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
# Checked in order; the first match names the range. Everything outside 2000::/3 is refused.
_V6_RANGES: tuple[tuple[ipaddress.IPv6Network, str], ...] = tuple(
    (ipaddress.IPv6Network(net), label)
    for net, label in (
        ("::/128", "unspecified"),
        ("::1/128", "loopback"),
        ("::/96", "IPv4-compatible (deprecated)"),
        ("64:ff9b:1::/48", "local-use NAT64"),
        ("100::/64", "discard-only"),
        ("fc00::/7", "unique-local (private)"),
        ("fe80::/10", "link-local"),
        ("fec0::/10", "site-local"),
        ("ff00::/8", "multicast"),
        ("2001:db8::/32", "documentation"),
        ("2001::/23", "IETF protocol assignment (incl. Teredo)"),
        ("3fff::/20", "documentation"),
    )
)

# Ports a webhook may not target by default: services an HTTP POST could be aimed at to abuse
# (remote shells, mail, file sharing, directories, chat, VoIP) and the usual datastores and
# control planes (Docker, etcd, Kubernetes API and kubelet, MySQL, Postgres, CouchDB, Redis,
# Cassandra, Kafka, Elasticsearch, memcached, MongoDB).
DEFAULT_DENIED_TARGET_PORTS = (
    "21,22,23,25,53,110,111,119,135,137,139,143,389,445,465,512-515,563,587,636,993,995,2049,"
    "5060,5061,6665-6669,6697,"
    "2375,2376,2379,2380,3306,5432,5984,6379,6443,9042,9092,9200,9300,10250,11211,27017"
)

_V4_PART_RE = re.compile(r"0[xX][0-9a-fA-F]*|[0-9]+")
_NUMERIC_LABEL_RE = re.compile(r"[0-9]+|0x[0-9a-f]*")
_DNS_LABEL_RE = re.compile(r"[a-z0-9_-]{1,63}")


def forbidden_reason(ip: IPAddress) -> str | None:
    """A short name of the non-public range holding ``ip`` ("loopback", ...), or None."""
    if isinstance(ip, ipaddress.IPv4Address):
        for net, label in _V4_RANGES:
            if ip in net:
                return label
        return None if ip.is_global else "non-public"
    embedded = _embedded_ipv4(ip)
    if embedded is not None:
        inner = forbidden_reason(embedded)
        if inner is not None:
            return f"{inner} (embedded IPv4 {embedded})"
    else:
        for net6, label in _V6_RANGES:
            if ip in net6:
                return label
    if ip.scope_id:
        return "scoped (zone id)"
    if embedded is not None or ip in _V6_GLOBAL_UNICAST:
        return None
    return "not global unicast"


def is_forbidden_address(ip: IPAddress) -> bool:
    """True when ``ip`` is not a public unicast address (loopback, private, link-local,
    multicast, reserved, CGNAT, documentation, ... or an IPv6 form embedding such an IPv4)."""
    return forbidden_reason(ip) is not None


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv4-mapped, NAT64 (64:ff9b::/96) or 6to4 address stands for."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in _V6_NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip.sixtofour


def _v4_part(part: str) -> int | None:
    if len(part) > 40 or not _V4_PART_RE.fullmatch(part):
        return None
    if part[:2] in ("0x", "0X"):
        return int(part[2:] or "0", 16)
    if len(part) > 1 and part[0] == "0":
        return int(part, 8) if all(c in "01234567" for c in part) else None
    return int(part)


def _parse_ipv4_loose(host: str) -> ipaddress.IPv4Address | None:
    """IPv4 in any inet_aton/WHATWG form: 1-4 parts, each decimal, 0x-hex or 0-octal."""
    parts = host.split(".")
    if len(parts) > 1 and parts[-1] == "":
        parts.pop()  # one trailing dot, as browsers accept
    if not 1 <= len(parts) <= 4:
        return None
    values = [_v4_part(part) for part in parts]
    numbers = [v for v in values if v is not None]
    if len(numbers) != len(values):
        return None
    *head, last = numbers
    if any(v > 255 for v in head) or last >= 256 ** (5 - len(numbers)):
        return None
    value = last
    for index, octet in enumerate(head):
        value += octet << (8 * (3 - index))
    return ipaddress.IPv4Address(value)


def _parse_ipv6(text: str) -> ipaddress.IPv6Address | None:
    text = text.replace("%25", "%", 1)  # a zone id is percent-encoded inside a URL
    try:
        return ipaddress.IPv6Address(text)
    except ValueError:
        return None


def parse_host_literal(host: str) -> IPAddress | None:
    """The address ``host`` denotes if it is an IP literal, else None (a name, or garbage).

    Understands canonical and non-canonical IPv4 (``2130706433``, ``0x7f000001``,
    ``0x7f.0.0.1``, ``0177.0.0.1``, ``127.1``, a trailing dot) and IPv6 with or without
    brackets (``[::1]``, ``::ffff:127.0.0.1``, ``[fe80::1%25eth0]``).
    """
    if not host or len(host) > 255:
        return None
    if host.startswith("["):
        return _parse_ipv6(host[1:-1]) if host.endswith("]") else None
    if ":" in host:
        return _parse_ipv6(host)
    return _parse_ipv4_loose(host)


def _is_localhost_name(host: str) -> bool:
    name = host.rstrip(".").lower()
    return name == "localhost" or name.endswith(".localhost")


def check_url_host(url: str, resolved: Sequence[str]) -> str | None:
    """A reason to refuse sending to ``url``, or None when its host is public.

    Refuses a host that is a non-public IP literal, a ``localhost`` name, or that resolved
    (``resolved``: address strings from getaddrinfo) to any non-public address. Fails closed:
    an unparseable URL or address, or a name with no resolved address at all, is refused.
    """
    try:
        host = urlsplit(url).hostname
    except ValueError:
        return "url is not a valid URL"
    if not host:
        return "url has no host"
    literal = parse_host_literal(host)
    if literal is not None:
        reason = forbidden_reason(literal)
        if reason is not None:
            return f"host {host} is a {reason} address"
    elif _is_localhost_name(host):
        return f"host {host} is a loopback name"
    elif not resolved:
        return f"host {host} did not resolve to any address"
    for entry in resolved:
        try:
            address = ipaddress.ip_address(entry)
        except ValueError:
            return f"host {host} resolved to {entry!r}, which is not an IP address"
        reason = forbidden_reason(address)
        if reason is not None:
            return f"host {host} resolves to {address}, a {reason} address"
    return None


def _host_error(host: str, bracketed: bool) -> str | None:
    literal = parse_host_literal(host)
    if bracketed:
        return None if isinstance(literal, ipaddress.IPv6Address) else (
            "url host in brackets must be an IPv6 address")
    if literal is not None:
        return None
    name = host[:-1] if host.endswith(".") else host
    if _NUMERIC_LABEL_RE.fullmatch(name.rsplit(".", 1)[-1]):
        return "url host looks like an IPv4 address but is not a valid one"
    try:
        ascii_name = name.encode("idna").decode("ascii")
    except UnicodeError:
        return "url host is not a valid host name"
    labels = ascii_name.split(".")
    if len(ascii_name) > 253 or not all(_DNS_LABEL_RE.fullmatch(label) for label in labels):
        return "url host is not a valid host name"
    return None


def validate_endpoint_url(url: str) -> str | None:
    """An error message if ``url`` is not an acceptable endpoint URL, else None.

    Acceptable: an absolute http(s) URL of at most 2048 characters with a valid host (name or
    IP literal) and optional port, without credentials, fragment, whitespace or control
    characters. Whether the host is public is :func:`check_url_host`'s business.
    """
    if not isinstance(url, str) or not url:
        return "url is required"
    if len(url) > MAX_URL_LENGTH:
        return f"url must be at most {MAX_URL_LENGTH} characters"
    if any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in url):
        return "url must not contain whitespace or control characters"
    try:
        parts = urlsplit(url)
    except ValueError:
        return "url is not a valid URL (check the host)"
    if parts.scheme and parts.scheme not in ("http", "https"):
        return "url scheme must be http or https"
    if not parts.scheme or not url[len(parts.scheme) + 1:].startswith("//"):
        return "url must be absolute, like https://example.com/webhooks"
    if "@" in parts.netloc:
        return "url must not contain credentials (user:password@)"
    if "#" in url:
        return "url must not contain a fragment (#...)"
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port == 0:
        return "url port must be a number from 1 to 65535"
    host = parts.hostname
    if not host:
        return "url must have a host"
    return _host_error(host, bracketed=parts.netloc.startswith("["))


def parse_port_set(text: str) -> frozenset[int]:
    """``"22,25,6000-6010"`` as a set of ports; ``"none"`` is the empty set.

    Raises ValueError naming the first entry that is not a port or an ascending range of ports.
    """
    if text.strip().lower() == "none":
        return frozenset()
    ports: set[int] = set()
    for part in text.split(","):
        item = part.strip()
        low, dash, high = item.partition("-")
        bounds = (low, high) if dash else (low, low)
        if not all(b.isascii() and b.isdigit() and len(b) <= 5 for b in bounds):
            raise ValueError(f"port entry {item!r} is not a port or a range like 6000-6010")
        first, last = int(bounds[0]), int(bounds[1])
        if not 1 <= first <= last <= 65535:
            raise ValueError(f"port entry {item!r} is outside 1..65535 or not ascending")
        ports.update(range(first, last + 1))
    return frozenset(ports)


def connect_target(url: str) -> tuple[str, int]:
    """The host and port an HTTP client (aiohttp, through yarl) will connect to for ``url``.

    The host is yarl's normalised ASCII form: Unicode digits and full stops folded (the
    full-width or ideographic-full-stop spellings of ``127.0.0.1`` give ``127.0.0.1``), names
    IDNA-encoded and lower-cased, IPv6 without brackets. Raises ValueError when ``url`` has no
    usable host.
    """
    parsed = URL(url)
    host = parsed.raw_host
    port = parsed.port
    if not host or port is None:
        raise ValueError("url has no host")
    return host, port


def canonical_endpoint_url(url: str) -> str:
    """``url`` with its scheme lower-cased and its host in the form a connection uses.

    The host becomes what :func:`connect_target` gives, and an IPv4 literal in any inet_aton
    form (``0x7f.1``, ``2130706433``) becomes dotted-quad; an explicit port is kept, as a plain
    number; path, query and everything else are kept byte for byte. Stored URLs are in this
    form, so what was validated is what the dispatcher connects to. ``url`` must already be a
    valid endpoint URL (:func:`validate_endpoint_url`); raises ValueError otherwise.
    """
    parts = urlsplit(url)
    host, _ = connect_target(url)
    literal = parse_host_literal(host)
    if isinstance(literal, ipaddress.IPv4Address):
        host = str(literal)
    elif ":" in host:
        host = f"[{host}]"
    explicit = parts.port
    port = f":{explicit}" if explicit is not None else ""
    scheme = parts.scheme.lower()
    rest = url[len(parts.scheme) + 3 + len(parts.netloc):]
    return f"{scheme}://{host}{port}{rest}"


def connect_block_reason(url: str, denied_ports: frozenset[int] = frozenset(), *,
                         allow_private: bool = False) -> str | None:
    """Why the connection for ``url`` must not be made, judged on the host the client will
    really connect to (:func:`connect_target`); None when nothing is wrong yet.

    Refuses a port in ``denied_ports`` and a URL the client could not parse (fails closed);
    unless ``allow_private``, also a non-public IP literal (in any form) and a ``localhost``
    name. A host name is left to the resolver-time check, which sees the resolved addresses.
    """
    try:
        host, port = connect_target(url)
    except ValueError:
        return "url has no valid host"
    if port in denied_ports:
        return f"port {port} is not allowed (see POSTWIRE_DENIED_TARGET_PORTS)"
    if allow_private:
        return None
    literal = parse_host_literal(host)
    if literal is not None:
        reason = forbidden_reason(literal)
        return None if reason is None else f"host {host} is a {reason} address"
    if _is_localhost_name(host):
        return f"host {host} is a loopback name"
    return None
