"""``shared.adapters.dns.resolve_host``: loopback names and literals only, failures faked."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest

from shared.adapters.dns import ResolutionFailed, resolve_host


async def test_localhost_resolves_to_loopback_only() -> None:
    addresses = await resolve_host("localhost", 80)
    assert addresses
    assert set(addresses) <= {"127.0.0.1", "::1"}
    assert len(addresses) == len(set(addresses))


async def test_ip_literals_resolve_to_themselves() -> None:
    assert await resolve_host("127.0.0.1", 443) == ["127.0.0.1"]
    assert await resolve_host("::1", 443) == ["::1"]


def _patch_getaddrinfo(monkeypatch: pytest.MonkeyPatch, fake: Any) -> None:
    monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", fake)


async def test_zone_ids_are_stripped_and_duplicates_dropped(
        monkeypatch: pytest.MonkeyPatch) -> None:
    async def fake(host: str, port: int, **_: Any) -> list[Any]:
        v6 = (socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("fe80::1%eth0", port, 0, 2))
        v4 = (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", port))
        return [v6, v4, v4]

    _patch_getaddrinfo(monkeypatch, fake)
    assert await resolve_host("hooks.test", 80) == ["fe80::1", "93.184.216.34"]


@pytest.mark.parametrize(("errno", "temporary"), [
    (socket.EAI_NONAME, False), (socket.EAI_AGAIN, True), (socket.EAI_FAIL, True)])
async def test_resolver_errors_are_translated(monkeypatch: pytest.MonkeyPatch, errno: int,
                                              temporary: bool) -> None:
    async def fake(host: str, port: int, **_: Any) -> list[Any]:
        raise socket.gaierror(errno, "resolver says no")

    _patch_getaddrinfo(monkeypatch, fake)
    with pytest.raises(ResolutionFailed) as info:
        await resolve_host("nowhere.test", 80)
    assert info.value.temporary is temporary
    assert str(info.value) == "host 'nowhere.test' does not resolve (resolver says no)"


async def test_slow_resolution_times_out(monkeypatch: pytest.MonkeyPatch) -> None:
    async def fake(host: str, port: int, **_: Any) -> list[Any]:
        await asyncio.sleep(30)
        return []

    _patch_getaddrinfo(monkeypatch, fake)
    with pytest.raises(ResolutionFailed) as info:
        await resolve_host("slow.test", 80, timeout_s=0.05)
    assert info.value.temporary is True
    assert "timed out" in str(info.value)


async def test_empty_answer_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    async def fake(host: str, port: int, **_: Any) -> list[Any]:
        return []

    _patch_getaddrinfo(monkeypatch, fake)
    with pytest.raises(ResolutionFailed) as info:
        await resolve_host("empty.test", 80)
    assert info.value.temporary is False


async def test_invalid_name_is_refused() -> None:
    with pytest.raises(ResolutionFailed) as info:
        await resolve_host("a" * 64 + ".\u00e9xample", 80)  # label too long for IDNA
    assert "not a valid host name" in str(info.value)
