"""The console's and portal's list queries on real Postgres: each filter narrows the list, and
only the filters given take part (the WHERE builder)."""

from __future__ import annotations

import uuid

import asyncpg

from services.dlq_replay.console.queries import (
    EventSearch,
    endpoint_deliveries,
    endpoints_with_health,
    search_events,
)
from tests.support.seeding import insert_dead_deliveries, insert_endpoint

URL = "http://127.0.0.1:9/hook"


def _account() -> str:
    return f"acct_{uuid.uuid4().hex[:10]}"


async def test_endpoints_by_account_id_and_position(pool: asyncpg.Pool) -> None:
    account, other = _account(), _account()
    first = await insert_endpoint(pool, account_id=account, url=URL)
    second = await insert_endpoint(pool, account_id=account, url=URL)
    await insert_endpoint(pool, account_id=account, url=URL, deleted=True)
    await insert_endpoint(pool, account_id=other, url=URL)
    mine = await endpoints_with_health(pool, account_id=account)
    assert [e["id"] for e in mine] == [second.id, first.id]  # newest first, deleted left out
    assert [e["id"] for e in await endpoints_with_health(pool, endpoint_id=first.id)] == [
        first.id]
    below = await endpoints_with_health(pool, account_id=account, before=second.id)
    assert [e["id"] for e in below] == [first.id]
    assert len(await endpoints_with_health(pool, limit=1)) == 1


async def test_event_search_by_account_type_and_position(pool: asyncpg.Pool) -> None:
    account = _account()
    endpoint = await insert_endpoint(pool, account_id=account, url=URL)
    paid = await insert_dead_deliveries(pool, endpoint, 2, event_type="invoice.paid")
    failed = await insert_dead_deliveries(pool, endpoint, 1, event_type="invoice.failed")
    found = await search_events(pool, EventSearch(account_id=account))
    assert sorted(e["id"] for e in found) == sorted(d.event_id for d in paid + failed)
    typed = await search_events(pool, EventSearch(account_id=account, type="invoice.paid"))
    assert sorted(e["id"] for e in typed) == sorted(d.event_id for d in paid)
    newest = max(d.event_id for d in paid + failed)
    below = await search_events(pool, EventSearch(account_id=account), before=newest)
    assert newest not in {e["id"] for e in below} and len(below) == 2


async def test_endpoint_deliveries_by_status_and_position(pool: asyncpg.Pool) -> None:
    account = _account()
    endpoint = await insert_endpoint(pool, account_id=account, url=URL)
    dead = await insert_dead_deliveries(pool, endpoint, 2)
    pending = await insert_dead_deliveries(pool, endpoint, 1, status="pending")
    every = await endpoint_deliveries(pool, account_id=account, endpoint_id=endpoint.id)
    assert len(every) == 3
    only_dead = await endpoint_deliveries(pool, account_id=account, endpoint_id=endpoint.id,
                                          status="dead")
    assert sorted(d["id"] for d in only_dead) == sorted(d.delivery_id for d in dead)
    assert await endpoint_deliveries(pool, account_id=_account(), endpoint_id=endpoint.id) == []
    newest = max(d.delivery_id for d in dead + pending)
    below = await endpoint_deliveries(pool, account_id=account, endpoint_id=endpoint.id,
                                      before=newest)
    assert len(below) == 2 and newest not in {d["id"] for d in below}
