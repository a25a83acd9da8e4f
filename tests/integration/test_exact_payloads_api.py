"""Exact payloads and deep documents through the real ingest and admin APIs (real Postgres and
broker): what is stored and read back is the producer's ``data``, byte for byte; what cannot
be delivered as sent is a 400 naming the field (per item in a batch); and no stored document,
however deep, can make a read fail.

Each case reproduces a report: ``{"n": 123456789012345678901234567890}`` was stored as
``1.2345678901234568e+29``; data nested 255..1023 levels answered 503 (a batch holding one
such item failed whole); data nested 252..254 levels was accepted and then every read of it
(``GET /v1/events/{id}`` and every list page holding it) answered 503.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import asyncpg
import orjson
import pytest

from services.ingest.event_validation import MAX_DATA_DEPTH
from shared.core.event_body import render_body
from shared.core.ids import new_id
from shared.core.timefmt import format_ts, utcnow
from tests.support.admin_app import AdminApp
from tests.support.ingest_app import (
    PUBLIC_URL,
    Ingest,
    assert_error,
    create_endpoint,
    new_account,
)

EXACT = (b'{ "n": 123456789012345678901234567890, "neg": -98765432109876543210987654321,'
         b' "z": -0.0, "e": 1E+5, "tiny": 1e-400, "huge": 2.5e400,'
         b' "p": 0.10000000000000000001, "u": "\\u00e9\\ud83d\\ude00", "nul": "a\\u0000b",'
         b'\n "nested": [ {"k": 18446744073709551616} ] }')


def _exact(raw: bytes) -> Any:
    return json.loads(raw, parse_float=Decimal)


async def _post(api: Ingest, path: str, raw: bytes,
                key: str | None = None) -> tuple[int, bytes]:
    headers = {**api.auth, "Content-Type": "application/json"}
    if key is not None:
        headers["Idempotency-Key"] = key
    async with api.client.post(path, data=raw, headers=headers) as response:
        return response.status, await response.read()


async def _get(api: Ingest, path: str) -> tuple[int, bytes]:
    async with api.client.get(path, headers=api.auth) as response:
        return response.status, await response.read()


async def _admin_get(admin: AdminApp, path: str) -> tuple[int, bytes]:
    headers = {"Authorization": f"Bearer {admin.token}"}
    async with admin.client.get(path, headers=headers) as response:
        return response.status, await response.read()


def _event(account: str, data: bytes) -> bytes:
    return (f'{{"account_id": "{account}", "type": "invoice.paid", "data": '.encode() + data
            + b"}")


def _nested(depth: int) -> bytes:
    return (b'{"a":' * depth + b"1" + b"}" * depth)


async def _reads(api: Ingest, admin: AdminApp, account: str, event_id: str) -> list[bytes]:
    """The raw bodies of every read that shows the event: single, list, admin view."""
    bodies = []
    for status, raw in (await _get(api, f"/v1/events/{event_id}"),
                        await _get(api, f"/v1/events?account_id={account}"),
                        await _admin_get(admin, f"/admin/v1/events/{event_id}")):
        assert status == 200, raw
        bodies.append(raw)
    return bodies


async def test_data_is_stored_delivered_and_read_back_byte_for_byte(
        api: Ingest, admin: AdminApp, db: asyncpg.Connection) -> None:
    account = new_account()
    await create_endpoint(api, account_id=account)
    status, raw = await _post(api, "/v1/events", _event(account, EXACT))
    assert status == 202, raw
    event_id = orjson.loads(raw)["id"]
    row = await db.fetchrow("SELECT body, created_at FROM events WHERE id = $1", event_id)
    assert bytes(row["body"]) == render_body(event_id, "invoice.paid",
                                             format_ts(row["created_at"]) or "", account, EXACT)
    single, listed, viewed = await _reads(api, admin, account, event_id)
    for body in (single, viewed):
        assert b'"data":' + EXACT in body
        assert _exact(body)["data"] == _exact(EXACT)
    assert b'"data":' + EXACT in listed
    assert [_exact(listed)["data"][0]["data"]] == [_exact(EXACT)]
    assert _exact(single)["data"]["n"] == 123456789012345678901234567890


async def test_batch_items_keep_their_own_bytes(api: Ingest, db: asyncpg.Connection) -> None:
    account = new_account()
    datas = [EXACT, b'{"n":1}', b'{\n  "x" : [ 1e2 , -0 ]\n}']
    status, raw = await _post(api, "/v1/events/batch", b'{"events": ['
                              + b", ".join(_event(account, d) for d in datas) + b"]}")
    assert status == 202, raw
    ids = [item["id"] for item in orjson.loads(raw)["data"]]
    bodies = await db.fetch("SELECT id, body FROM events WHERE id = ANY($1::text[])", ids)
    stored = {r["id"]: bytes(r["body"]) for r in bodies}
    assert [stored[i].endswith(b'"data":' + d + b"}") for i, d in zip(ids, datas,
                                                                      strict=True)] == [True] * 3


@pytest.mark.parametrize("data", [b'{"s": "\\ud800"}', b'{"a": 1, "a": 2}'])
async def test_data_that_cannot_be_delivered_as_sent_is_400_naming_it(
        api: Ingest, data: bytes) -> None:
    status, raw = await _post(api, "/v1/events", _event(new_account(), data))
    assert_error(status, orjson.loads(raw), 400, "invalid_request", "data")


@pytest.mark.parametrize("depth", [MAX_DATA_DEPTH + 1, 252, 254, 255, 1023, 1024, 30_000])
async def test_deep_data_is_400_naming_data_and_alone_in_a_batch(
        api: Ingest, db: asyncpg.Connection, depth: int) -> None:
    account = new_account()
    status, raw = await _post(api, "/v1/events", _event(account, _nested(depth)))
    assert_error(status, orjson.loads(raw), 400, "invalid_request", "data")
    assert str(MAX_DATA_DEPTH) in orjson.loads(raw)["error"]["message"]
    batch = [_event(account, b'{"ok":1}'), _event(account, _nested(depth)),
             _event(account, _nested(MAX_DATA_DEPTH))]
    status, raw = await _post(api, "/v1/events/batch", b'{"events":[' + b",".join(batch) + b"]}")
    assert status == 202, raw
    first, deep, last = orjson.loads(raw)["data"]
    assert deep["error"]["param"] == "events[1].data" and "error" not in first | last
    assert await db.fetchval("SELECT count(*) FROM events WHERE account_id = $1", account) == 2


async def test_a_stored_document_of_any_depth_never_breaks_a_read(
        api: Ingest, admin: AdminApp, db: asyncpg.Connection) -> None:
    """Rows as earlier versions could store them (253 levels, or deeper by any other path)
    are read back as stored: the single read, every list page and the admin view."""
    account = new_account()
    now = utcnow().replace(microsecond=0)
    made = []
    for depth in (253, 254, 5_000):
        event_id = new_id("evt")
        body = render_body(event_id, "invoice.paid", format_ts(now) or "", account,
                           _nested(depth))
        await db.execute(
            "INSERT INTO events (id, account_id, type, ordering_key, body, created_at,"
            " delivery_count) VALUES ($1, $2, 'invoice.paid', NULL, $3, $4, 0)",
            event_id, account, body, now)
        made.append((event_id, depth))
    for event_id, depth in made:
        single, listed, viewed = await _reads(api, admin, account, event_id)
        for raw in (single, listed, viewed):
            assert b'"data":' + _nested(depth) in raw
    status, raw = await _get(api, f"/v1/events?account_id={account}&limit=1")
    assert status == 200 and b'"data":' + _nested(5_000) in raw


async def test_idempotency_tells_big_integers_apart_and_ignores_spelling(api: Ingest) -> None:
    account = new_account()
    first = _event(account, b'{"n": 123456789012345678901234567890}')
    status, raw = await _post(api, "/v1/events", first, key="big-1")
    assert status == 202, raw
    respelled = _event(account, b'{ "n" : 123456789012345678901234567890 }')
    assert await _post(api, "/v1/events", respelled, key="big-1") == (202, raw)
    changed = _event(account, b'{"n": 123456789012345678901234567891}')
    status, conflict = await _post(api, "/v1/events", changed, key="big-1")
    assert_error(status, orjson.loads(conflict), 409, "idempotency_conflict", "Idempotency-Key")


@pytest.mark.parametrize(("metadata", "param"), [
    ('{"note": "a\\u0000b"}', "metadata.note"), ('{"k\\u0000": "v"}', "metadata")])
async def test_nul_in_endpoint_metadata_is_400_not_503(api: Ingest, metadata: str,
                                                        param: str) -> None:
    """Endpoint metadata is jsonb, which cannot hold NUL: refused, not a database error."""
    body = (f'{{"account_id": "{new_account()}", "url": "{PUBLIC_URL}",'
            f' "metadata": {metadata}}}').encode()
    status, raw = await _post(api, "/v1/endpoints", body)
    assert_error(status, orjson.loads(raw), 400, "invalid_request", param)


async def test_nul_in_an_admin_reason_or_filter_is_400_not_503(admin: AdminApp,
                                                               api: Ingest) -> None:
    """Reasons and filters go to text and jsonb columns (audit log, replay jobs)."""
    status, raw = await _post(api, "/v1/events", _event(new_account(), b'{"n":1}'))
    assert status == 202, raw
    event_id = orjson.loads(raw)["id"]
    headers = {"Authorization": f"Bearer {admin.token}", "Content-Type": "application/json"}
    for path, body, param in (
            (f"/admin/v1/events/{event_id}/replay", b'{"reason": "fix\\u0000"}', "reason"),
            ("/admin/v1/replays", b'{"reason": "r", "filter": {"type": "a\\u0000"}}',
             "filter.type")):
        async with admin.client.post(path, data=body, headers=headers) as response:
            assert_error(response.status, orjson.loads(await response.read()), 400,
                         "invalid_request", param)
