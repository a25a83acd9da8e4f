"""Running the admin app in-process over real loopback HTTP.

For integration tests: the app is built by ``services.dlq_replay.app.make_app`` against real
Postgres and Kafka (from ``env``) and served with aiohttp's TestServer on 127.0.0.1. What it
publishes is read with ``tests.support.topics``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from services.dlq_replay.app import make_app
from services.dlq_replay.context import CTX, AdminContext
from services.dlq_replay.settings import load_admin_settings


@dataclass
class AdminApp:
    """A running in-process admin app and an HTTP client bound to it."""

    app: web.Application
    client: TestClient[web.Request, web.Application]
    token: str

    @property
    def ctx(self) -> AdminContext:
        return self.app[CTX]

    async def call(self, method: str, path: str, body: Any = None, *,
                   token: str | None = None,
                   headers: Mapping[str, str] | None = None) -> tuple[int, Any, Mapping[str, str]]:
        """Send a request (JSON body if given) with the admin token; returns status, JSON
        body (None when empty) and headers."""
        sent = {"Authorization": f"Bearer {token or self.token}", **(headers or {})}
        kwargs: dict[str, Any] = {"headers": sent}
        if body is not None:
            kwargs["json"] = body
        async with self.client.request(method, path, **kwargs) as response:
            raw = await response.read()
            payload = await response.json() if raw else None
            return response.status, payload, response.headers


@asynccontextmanager
async def running_admin(env: Mapping[str, str]) -> AsyncIterator[AdminApp]:
    """Serve the admin app for the duration of the block; its background loops run too."""
    settings = load_admin_settings(env)
    app = await make_app(settings)
    server = TestServer(app, host="127.0.0.1")
    client = TestClient(server)
    await client.start_server()
    try:
        yield AdminApp(app, client, settings.admin_tokens[0][1])
    finally:
        await client.close()

