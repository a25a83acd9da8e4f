"""An in-process ingest app served over real loopback HTTP, for integration tests.

``running_ingest(env)`` builds the app with ``services.ingest.app.make_app`` (real Postgres and
broker from ``env``), serves it with aiohttp's TestServer on 127.0.0.1 and yields an
:class:`Ingest` handle. The SSRF guard's resolver is replaced by :class:`SafeResolver`, which
answers from a fixed table and resolves nothing but ``localhost`` for real: tests never send a
DNS query off the machine.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from services.ingest.app import make_app
from services.ingest.context import CTX, IngestContext
from services.ingest.endpoint_cache import ENDPOINT_CACHE, EndpointCache
from services.ingest.endpoints_api import ENDPOINT_RESOLVER
from services.ingest.settings import load_ingest_settings
from shared.adapters.dns import ResolutionFailed, Resolver, resolve_host
from shared.core.ids import new_id

PUBLIC_URL = "https://93.184.216.34/hooks"

FAKE_DNS: dict[str, list[str]] = {
    "public.test": ["93.184.216.34", "2606:2800:220:1::"],
    "internal.test": ["10.0.0.5"],
    "metadata.test": ["169.254.169.254"],
    "mixed.test": ["93.184.216.34", "127.0.0.1"],
    "mapped.test": ["::ffff:10.0.0.1"],
}


class SafeResolver:
    """``localhost`` through the real resolver (``/etc/hosts``), other names from a table.

    Names outside the table do not resolve (``temporary=False``). Records every lookup.
    """

    def __init__(self, table: Mapping[str, list[str]] = FAKE_DNS) -> None:
        self.table = dict(table)
        self.calls: list[str] = []

    async def __call__(self, host: str, port: int) -> list[str]:
        self.calls.append(host)
        if host == "localhost":
            return await resolve_host(host, port)
        if host not in self.table:
            raise ResolutionFailed(f"host {host!r} does not resolve (no such name)",
                                   temporary=False)
        return list(self.table[host])


@dataclass
class Ingest:
    """A running in-process ingest app and an HTTP client bound to it."""

    app: web.Application
    client: TestClient[web.Request, web.Application]
    resolver: SafeResolver
    api_key: str

    @property
    def ctx(self) -> IngestContext:
        return self.app[CTX]

    @property
    def cache(self) -> EndpointCache:
        return self.app[ENDPOINT_CACHE]

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}

    async def call(self, method: str, path: str, body: Any = None,
                   **kwargs: Any) -> tuple[int, Any]:
        """One authenticated request; returns (status, parsed JSON body or None)."""
        headers = {**self.auth, **kwargs.pop("headers", {})}
        async with self.client.request(method, path, json=body, headers=headers,
                                       **kwargs) as response:
            data = await response.json() if response.content_type == "application/json" else None
            return response.status, data


@asynccontextmanager
async def running_ingest(env: Mapping[str, str]) -> AsyncIterator[Ingest]:
    """Serve an ingest app for ``env`` on loopback; stops it (and its resources) on exit."""
    settings = load_ingest_settings(env)
    app = await make_app(settings)
    resolver = SafeResolver()
    resolve: Resolver = resolver
    app[ENDPOINT_RESOLVER] = resolve
    client: TestClient[web.Request, web.Application] = TestClient(
        TestServer(app, host="127.0.0.1"))
    await client.start_server()
    try:
        yield Ingest(app, client, resolver, settings.api_keys[0])
    finally:
        await client.close()


def new_account() -> str:
    """A fresh account id (tests of one module share a database)."""
    return f"acct_{new_id('ep')[-12:]}"


async def create_endpoint(api: Ingest, **fields: Any) -> dict[str, Any]:
    """POST /v1/endpoints (fresh account and a public URL unless given); asserts 201."""
    body = {"account_id": fields.pop("account_id", None) or new_account(), "url": PUBLIC_URL,
            **fields}
    status, data = await api.call("POST", "/v1/endpoints", body)
    assert status == 201, data
    assert isinstance(data, dict)
    return data


def assert_error(status: int, data: Any, expected_status: int, error_type: str,
                 param: str | None = None) -> None:
    """The response is the contract's error body with this status, type and param."""
    assert status == expected_status, data
    assert data["error"]["type"] == error_type, data
    assert data["error"]["param"] == param, data
    assert isinstance(data["error"]["message"], str) and data["error"]["message"]
