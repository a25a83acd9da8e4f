"""GET /v1/endpoints: filters, limits, cursors, and exactly-once walks under concurrent inserts."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from shared.core.cursor import encode_cursor
from tests.support.ingest_app import (
    Ingest,
    assert_error,
    create_endpoint,
    new_account,
)

INGEST_ENV = {"ALLOW_PRIVATE_TARGETS": "false"}  # the SSRF guard on: private targets refused


async def walk(api: Ingest, query: str) -> tuple[list[str], int]:
    """Every id of a cursor walk, in order, and the number of pages."""
    ids: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        suffix = f"&cursor={cursor}" if cursor else ""
        status, page = await api.call("GET", f"/v1/endpoints?{query}{suffix}")
        assert status == 200, page
        assert set(page) == {"data", "has_more", "next_cursor"}
        pages += 1
        ids.extend(item["id"] for item in page["data"])
        if not page["has_more"]:
            assert page["next_cursor"] is None
            return ids, pages
        assert isinstance(page["next_cursor"], str) and page["data"]
        cursor = page["next_cursor"]


async def test_list_is_newest_first_and_filtered_by_account(api: Ingest) -> None:
    acct, other = new_account(), new_account()
    mine = [(await create_endpoint(api, account_id=acct))["id"] for _ in range(3)]
    theirs = (await create_endpoint(api, account_id=other))["id"]
    status, page = await api.call("GET", f"/v1/endpoints?account_id={acct}")
    assert status == 200
    assert [item["id"] for item in page["data"]] == mine[::-1]
    assert (page["has_more"], page["next_cursor"]) == (False, None)
    assert all("secret" not in item for item in page["data"])
    ids, _ = await walk(api, "limit=100")
    assert set(mine) | {theirs} <= set(ids)  # without account_id: every account


async def test_default_limit_is_20(api: Ingest) -> None:
    acct = new_account()
    for _ in range(21):
        await create_endpoint(api, account_id=acct)
    status, page = await api.call("GET", f"/v1/endpoints?account_id={acct}")
    assert status == 200
    assert (len(page["data"]), page["has_more"]) == (20, True)
    ids, pages = await walk(api, f"account_id={acct}&limit=100")
    assert (len(ids), pages) == (21, 1)


async def test_exact_page_boundary_has_no_empty_last_page(api: Ingest) -> None:
    acct = new_account()
    created = [(await create_endpoint(api, account_id=acct))["id"] for _ in range(6)]
    ids, pages = await walk(api, f"account_id={acct}&limit=3")
    assert (ids, pages) == (created[::-1], 2)


async def test_walk_returns_each_row_once_while_rows_are_inserted(api: Ingest) -> None:
    acct = new_account()
    before = {(await create_endpoint(api, account_id=acct))["id"] for _ in range(25)}
    inserted: list[str] = []
    stop = asyncio.Event()

    async def insert_continuously() -> None:
        while not stop.is_set():
            inserted.append((await create_endpoint(api, account_id=acct))["id"])

    inserter = asyncio.create_task(insert_continuously())
    try:
        await asyncio.sleep(0.02)
        ids, pages = await walk(api, f"account_id={acct}&limit=3")
    finally:
        stop.set()
        await inserter
    assert inserted, "no row was inserted during the walk"
    assert pages >= 9
    assert len(ids) == len(set(ids))
    assert before <= set(ids)
    assert set(ids) <= before | set(inserted)
    assert ids == sorted(ids, reverse=True)


async def test_deleted_and_disabled_endpoints(api: Ingest) -> None:
    acct = new_account()
    kept = await create_endpoint(api, account_id=acct, enabled=False)
    gone = await create_endpoint(api, account_id=acct)
    assert (await api.call("DELETE", f"/v1/endpoints/{gone['id']}"))[0] == 204
    ids, _ = await walk(api, f"account_id={acct}")
    assert ids == [kept["id"]]  # disabled ones are listed, deleted ones are not


@pytest.mark.parametrize(("query", "param"), [
    ("limit=0", "limit"), ("limit=101", "limit"), ("limit=abc", "limit"), ("limit=-1", "limit"),
    ("limit=", "limit"), ("limit=1.5", "limit"), ("cursor=garbage!", "cursor"),
    ("cursor=", "cursor"), ("account_id=bad%20id", "account_id"), ("account_id=", "account_id"),
    ("status=enabled", "status"), ("limit=1&limit=2", "limit")])
async def test_bad_query_parameters(api: Ingest, query: str, param: str) -> None:
    status, data = await api.call("GET", f"/v1/endpoints?{query}")
    assert_error(status, data, 400, "invalid_request", param)


@pytest.mark.parametrize("key", [["ep_x", "extra"], [5]])
async def test_cursor_of_the_wrong_shape_or_list(api: Ingest, key: list[Any]) -> None:
    for cursor in (encode_cursor("endpoints", key), encode_cursor("events", ["evt_x"])):
        status, data = await api.call("GET", f"/v1/endpoints?cursor={cursor}")
        assert_error(status, data, 400, "invalid_request", "cursor")
