"""The SSRF guard at the API: private targets refused unless POSTWIRE_ALLOW_PRIVATE_TARGETS.

No connection is made to any URL here; host names other than ``localhost`` are answered by
the test resolver's table (see ``tests.support.ingest_app.FAKE_DNS``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest
import pytest_asyncio
from aiohttp import web

from services.ingest.endpoints_api import ENDPOINT_RESOLVER, setup_endpoints
from shared.adapters.dns import resolve_host
from shared.core.ssrf import canonical_endpoint_url
from tests.conftest import ServiceEnvFactory
from tests.support.ingest_app import (
    Ingest,
    assert_error,
    create_endpoint,
    new_account,
    running_ingest,
)

INGEST_ENV = {"ALLOW_PRIVATE_TARGETS": "false"}  # the SSRF guard on: private targets refused


@pytest_asyncio.fixture(scope="module")
async def lax_api(service_env: ServiceEnvFactory) -> AsyncIterator[Ingest]:
    async with running_ingest(service_env(ALLOW_PRIVATE_TARGETS="true")) as ingest:
        yield ingest


PRIVATE_URLS = [
    "http://127.0.0.1/hook", "http://127.0.0.1:9000/hook", "http://10.0.0.1/",
    "http://10.255.1.2:8443/x", "http://192.168.0.10/", "http://172.20.0.1/",
    "http://169.254.169.254/latest/meta-data/", "http://0.0.0.0/", "http://[::1]/",
    "http://[::1]:8080/", "http://[::ffff:10.0.0.1]/", "http://[::ffff:127.0.0.1]/",
    "http://[fe80::1]/", "http://[fc00::1]/", "http://2130706433/", "http://0x7f000001/",
    "http://0x7f.0.0.1/", "http://017700000001/", "http://127.1/", "http://224.0.0.251/",
    "http://localhost/", "http://localhost:8080/hooks", "http://LOCALHOST./",
    "http://hooks.localhost/",
    "https://internal.test/", "https://metadata.test/", "https://mixed.test/",
    "https://mapped.test/",
]


@pytest.mark.parametrize("url", PRIVATE_URLS)
async def test_private_targets_are_refused(api: Ingest, db: asyncpg.Connection,
                                           url: str) -> None:
    acct = new_account()
    status, data = await api.call("POST", "/v1/endpoints", {"account_id": acct, "url": url})
    assert_error(status, data, 400, "invalid_request", "url")
    assert "POSTWIRE_ALLOW_PRIVATE_TARGETS" in data["error"]["message"]
    assert await db.fetchval("SELECT count(*) FROM endpoints WHERE account_id = $1", acct) == 0


@pytest.mark.parametrize("url", PRIVATE_URLS)
async def test_private_targets_are_accepted_when_allowed(lax_api: Ingest, url: str) -> None:
    endpoint = await create_endpoint(lax_api, url=url)
    assert endpoint["url"] == canonical_endpoint_url(url)  # the host a connection will use
    assert lax_api.resolver.calls == []  # allowed means not even resolved


@pytest.mark.parametrize("url", ["http://93.184.216.34/", "https://93.184.216.34:8443/in",
                                 "https://[2606:2800:220:1::]/hook", "https://public.test/x"])
async def test_public_targets_are_accepted(api: Ingest, lax_api: Ingest, url: str) -> None:
    for ingest in (api, lax_api):
        assert (await create_endpoint(ingest, url=url))["url"] == url


async def test_names_are_resolved_and_literals_are_not(api: Ingest) -> None:
    api.resolver.calls.clear()
    await create_endpoint(api, url="https://public.test/a")
    await create_endpoint(api, url="https://93.184.216.34/a")
    status, _ = await api.call("POST", "/v1/endpoints",
                               {"account_id": new_account(), "url": "http://localhost:1/"})
    assert status == 400
    assert api.resolver.calls == ["public.test"]  # localhost is refused by name


async def test_unresolvable_host_is_a_clear_400(api: Ingest) -> None:
    status, data = await api.call("POST", "/v1/endpoints",
                                  {"account_id": new_account(), "url": "https://nowhere.test/"})
    assert_error(status, data, 400, "invalid_request", "url")
    assert "nowhere.test" in data["error"]["message"]
    assert "does not resolve" in data["error"]["message"]


@pytest.mark.parametrize("url", ["http://127.0.0.1/", "http://[::ffff:10.0.0.1]/",
                                 "http://0x7f000001/", "https://internal.test/",
                                 "https://nowhere.test/"])
async def test_patching_the_url_reruns_the_check(api: Ingest, url: str) -> None:
    endpoint = await create_endpoint(api)
    status, data = await api.call("PATCH", f"/v1/endpoints/{endpoint['id']}", {"url": url})
    assert_error(status, data, 400, "invalid_request", "url")
    _, fetched = await api.call("GET", f"/v1/endpoints/{endpoint['id']}")
    assert fetched["url"] == endpoint["url"]


async def test_patching_to_a_private_url_when_allowed(lax_api: Ingest) -> None:
    endpoint = await create_endpoint(lax_api)
    status, data = await lax_api.call("PATCH", f"/v1/endpoints/{endpoint['id']}",
                                      {"url": "http://10.0.0.7:3000/hook"})
    assert (status, data["url"]) == (200, "http://10.0.0.7:3000/hook")


async def test_patch_without_url_does_not_resolve(api: Ingest) -> None:
    endpoint = await create_endpoint(api, url="https://public.test/a")
    api.resolver.calls.clear()
    status, _ = await api.call("PATCH", f"/v1/endpoints/{endpoint['id']}",
                               {"description": "no url change"})
    assert status == 200
    assert api.resolver.calls == []


async def test_the_real_resolver_is_wired_by_default(api: Ingest) -> None:
    app = web.Application()
    setup_endpoints(app, api.ctx)
    assert app[ENDPOINT_RESOLVER] is resolve_host
