"""Fixtures shared by the integration tests (module scope, the session's event loop).

- ``api``: the ingest app in-process over loopback HTTP with the test environment, changed by
  the module's ``INGEST_ENV`` (a dict of ``service_env`` overrides) when it has one.
- ``admin``: the admin app in-process the same way, changed by the module's ``ADMIN_ENV``.
- ``db``: one asyncpg connection to the module's database.
- ``pool``: a small asyncpg pool (1 to 4 connections) to the module's database; opened the way
  every service opens its pool (:func:`shared.adapters.pg.pool.create_pool`: jsonb columns as
  Python values, sessions in UTC) when the module sets ``SERVICE_POOL = True``.
- ``seed``: a :class:`~tests.support.dispatch.Seeder` writing endpoints, events and deliveries
  straight into the module's database through ``pool``; it has no broker (a closed port), so
  tests seed with ``publish=False`` and find the messages in the outbox.

A module that needs more than other settings defines its own fixture of the same name, which
wins.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest
import pytest_asyncio

from shared.adapters.pg.pool import create_pool
from tests.conftest import ServiceEnvFactory
from tests.support.admin_app import AdminApp, running_admin
from tests.support.dispatch import Seeder
from tests.support.ingest_app import Ingest, running_ingest


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def api(request: pytest.FixtureRequest,
              service_env: ServiceEnvFactory) -> AsyncIterator[Ingest]:
    overrides: dict[str, str] = getattr(request.module, "INGEST_ENV", {})
    async with running_ingest(service_env(**overrides)) as ingest:
        yield ingest


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def admin(request: pytest.FixtureRequest,
                service_env: ServiceEnvFactory) -> AsyncIterator[AdminApp]:
    overrides: dict[str, str] = getattr(request.module, "ADMIN_ENV", {})
    async with running_admin(service_env(**overrides)) as app:
        yield app


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def db(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(database_url)
    try:
        yield conn
    finally:
        await conn.close()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def pool(request: pytest.FixtureRequest, database_url: str) -> AsyncIterator[asyncpg.Pool]:
    created = (await create_pool(database_url, min_size=1, max_size=4)
               if getattr(request.module, "SERVICE_POOL", False)
               else await asyncpg.create_pool(database_url, min_size=1, max_size=4))
    try:
        yield created
    finally:
        await created.close()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def seed(pool: asyncpg.Pool) -> AsyncIterator[Seeder]:
    seeder = Seeder(pool, "127.0.0.1:1", "unused.")
    try:
        yield seeder
    finally:
        await seeder.close()
