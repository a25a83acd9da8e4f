"""Fixtures shared by the integration tests (module scope, the session's event loop).

- ``api``: the ingest app in-process over loopback HTTP with the default test environment.
- ``admin``: the admin app in-process the same way.
- ``db``: one asyncpg connection to the module's database.
- ``pool``: a small asyncpg pool (1 to 4 connections) to the module's database.

A module that needs other settings defines its own fixture of the same name, which wins.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest_asyncio

from tests.conftest import ServiceEnvFactory
from tests.support.admin_app import AdminApp, running_admin
from tests.support.ingest_app import Ingest, running_ingest


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def api(service_env: ServiceEnvFactory) -> AsyncIterator[Ingest]:
    async with running_ingest(service_env()) as ingest:
        yield ingest


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def admin(service_env: ServiceEnvFactory) -> AsyncIterator[AdminApp]:
    async with running_admin(service_env()) as app:
        yield app


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def db(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(database_url)
    try:
        yield conn
    finally:
        await conn.close()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    created = await asyncpg.create_pool(database_url, min_size=1, max_size=4)
    try:
        yield created
    finally:
        await created.close()
