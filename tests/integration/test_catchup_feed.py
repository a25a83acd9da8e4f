"""The merchant catch-up feed over real HTTP and Postgres: exactly once while events arrive,
the commit horizon, feed-token authentication, and the Python catch-up helper."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import orjson

from postwire.catchup import FeedClient, FeedError, find_unseen
from shared.core.feed_token import feed_token
from shared.core.ids import new_id
from shared.core.timefmt import utcnow
from tests.support.ingest_app import (
    Ingest,
    assert_error,
    create_endpoint,
    new_account,
)


async def feed_page(api: Ingest, endpoint_id: str, token: str | None,
                    **query: str) -> tuple[int, Any]:
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    async with api.client.get(f"/v1/feed/{endpoint_id}", params=query,
                              headers=headers) as response:
        return response.status, await response.json()


async def send(api: Ingest, account: str, n: int) -> list[str]:
    """n events, sent as concurrent single POSTs and batches; returns their ids."""
    async def one(i: int) -> list[str]:
        if i % 3 == 0:
            status, data = await api.call("POST", "/v1/events/batch", {"events": [
                {"account_id": account, "type": "order.paid", "data": {"i": i, "j": j}}
                for j in range(4)]})
            assert status == 202, data
            return [item["id"] for item in data["data"]]
        status, data = await api.call("POST", "/v1/events", {
            "account_id": account, "type": "order.paid", "data": {"i": i}})
        assert status == 202, data
        return [data["id"]]
    ids: list[str] = []
    for start in range(0, n, 8):
        for chunk in await asyncio.gather(*(one(i) for i in range(start, min(n, start + 8)))):
            ids.extend(chunk)
    return ids


async def test_feed_returns_each_event_exactly_once_while_events_arrive(api: Ingest) -> None:
    account = new_account()
    endpoint = await create_endpoint(api, account_id=account)
    other = await create_endpoint(api, account_id=account, event_types=["refund.*"])
    token = feed_token(endpoint["id"], endpoint["secret"])
    producer = asyncio.create_task(send(api, account, 120))
    seen: list[str] = []
    read_while_sending = 0
    cursor: str | None = None
    while True:
        done = producer.done()
        status, page = await feed_page(api, endpoint["id"], token, limit="7",
                                       **({"cursor": cursor} if cursor else {}))
        assert status == 200, page
        assert page["next_cursor"], "the feed always hands back a resume point"
        cursor = page["next_cursor"]
        read_while_sending += 0 if done else len(page["data"])
        for item in page["data"]:
            seen.append(item["webhook_id"])
            assert item["webhook_id"] == item["event_id"]
            assert item["body"]["id"] == item["event_id"]
            assert item["status"] == "pending"
        if done and not page["has_more"]:
            break
        if not page["has_more"]:
            await asyncio.sleep(0.01)
    sent = await producer
    assert len(seen) == len(set(seen)), "an event was returned twice"
    assert set(seen) == set(sent)
    status, page = await feed_page(api, endpoint["id"], token, since="2999-01-01T00:00:00Z")
    assert status == 200 and page["data"] == [] and not page["has_more"]
    status, page = await feed_page(api, endpoint["id"], token, since="2000-01-01T00:00:00Z",
                                   limit="5")
    assert status == 200 and [i["webhook_id"] for i in page["data"]] == seen[:5]
    status, page = await feed_page(api, endpoint["id"], token, since="yesterday")
    assert_error(status, page, 400, "invalid_request", "since")
    assert 0 < read_while_sending < len(sent), "the walk must overlap the arrivals"
    status, page = await feed_page(api, other["id"], feed_token(other["id"], other["secret"]))
    assert status == 200 and page["data"] == [] and not page["has_more"]


async def test_a_row_committed_late_is_not_skipped(api: Ingest, database_url: str) -> None:
    """A transaction that started earlier but commits later holds the horizon back, so the
    row committed after it is not served before it, and neither is lost."""
    account = new_account()
    endpoint = await create_endpoint(api, account_id=account)
    token = feed_token(endpoint["id"], endpoint["secret"])
    conn = await asyncpg.connect(database_url)
    try:
        tx = conn.transaction()
        await tx.start()
        late_event = new_id("evt")
        body = orjson.dumps({"id": late_event, "type": "order.paid", "data": {}})
        await conn.execute(
            "INSERT INTO events (id, account_id, type, body, created_at, delivery_count)"
            " VALUES ($1, $2, 'order.paid', $3, $4, 1)", late_event, account, body, utcnow())
        await conn.execute(
            "INSERT INTO deliveries (id, event_id, endpoint_id, account_id, status, created_at,"
            " updated_at) VALUES ($1, $2, $3, $4, 'pending', $5, $5)",
            new_id("dlv"), late_event, endpoint["id"], account, utcnow())
        status, accepted = await api.call("POST", "/v1/events", {
            "account_id": account, "type": "order.paid", "data": {}})
        assert status == 202, accepted
        early_event = accepted["id"]
        status, page = await feed_page(api, endpoint["id"], token)
        assert status == 200 and page["data"] == [], "served past an open transaction"
        cursor = page["next_cursor"]
        await tx.commit()
    finally:
        await conn.close()
    status, page = await feed_page(api, endpoint["id"], token, cursor=cursor)
    assert [i["event_id"] for i in page["data"]] == [late_event, early_event]


async def test_feed_tokens_are_scoped_derived_and_rotate(api: Ingest) -> None:
    account = new_account()
    endpoint = await create_endpoint(api, account_id=account)
    other = await create_endpoint(api, account_id=account)
    ep = endpoint["id"]
    token = feed_token(ep, endpoint["secret"])
    status, data = await api.call("GET", f"/v1/endpoints/{ep}/feed-token")
    assert status == 200 and data == {"token": token}
    for bad in (None, "pwfeed_nope", feed_token(other["id"], other["secret"]), api.api_key):
        status, body = await feed_page(api, ep, bad)
        assert_error(status, body, 401, "authentication_failed")
    status, body = await feed_page(api, new_id("ep"), token)
    assert_error(status, body, 401, "authentication_failed")
    status, body = await feed_page(api, ep, token, limit="0")
    assert_error(status, body, 400, "invalid_request", "limit")
    _, first = await feed_page(api, other["id"], feed_token(other["id"], other["secret"]))
    status, body = await feed_page(api, ep, token, cursor=first["next_cursor"])
    assert_error(status, body, 400, "invalid_request", "cursor")

    status, rotated = await api.call("POST", f"/v1/endpoints/{ep}/rotate-secret",
                                     {"grace_period_s": 3600})
    assert status == 200, rotated
    new_token = feed_token(ep, rotated["secret"])
    assert (await feed_page(api, ep, token))[0] == 200, "the old token works during the grace"
    assert (await feed_page(api, ep, new_token))[0] == 200
    status, rotated = await api.call("POST", f"/v1/endpoints/{ep}/rotate-secret",
                                     {"grace_period_s": 0})
    assert (await feed_page(api, ep, new_token))[0] == 401, "no grace: the old token is dead"
    assert (await feed_page(api, ep, feed_token(ep, rotated["secret"])))[0] == 200
    status, _ = await api.call("DELETE", f"/v1/endpoints/{ep}")
    assert status == 204
    assert (await feed_page(api, ep, feed_token(ep, rotated["secret"])))[0] == 401


async def test_client_helper_returns_what_the_merchant_never_saw(api: Ingest) -> None:
    account = new_account()
    endpoint = await create_endpoint(api, account_id=account)
    sent = await send(api, account, 30)
    processed = sent[::2]
    base_url = str(api.client.make_url("/"))
    missed = await asyncio.to_thread(find_unseen, base_url, endpoint["id"], processed,
                                     secret=endpoint["secret"])
    assert sorted(i.webhook_id for i in missed.items) == sorted(set(sent) - set(processed))
    assert missed.read == len(sent) and missed.cursor
    assert all(i.body["id"] == i.webhook_id for i in missed.items)
    more = await send(api, account, 2)
    again = await asyncio.to_thread(find_unseen, base_url, endpoint["id"], [],
                                    token=feed_token(endpoint["id"], endpoint["secret"]),
                                    cursor=missed.cursor)
    assert sorted(i.webhook_id for i in again.items) == sorted(more)
    bad = FeedClient(base_url, endpoint["id"], token="pwfeed_wrong")
    try:
        await asyncio.to_thread(bad.page)
        raise AssertionError("a wrong token must be refused")
    except FeedError as exc:
        assert exc.status == 401 and exc.type == "authentication_failed"
