"""PATCH, DELETE and secret rotation of endpoints, checked against the rows in Postgres."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from shared.core.ids import new_id
from shared.core.signing import parse_secret
from shared.core.timefmt import parse_ts
from tests.support.ingest_app import (
    Ingest,
    assert_error,
    create_endpoint,
)

INGEST_ENV = {"ALLOW_PRIVATE_TARGETS": "false"}  # the SSRF guard on: private targets refused


# --- PATCH ----------------------------------------------------------------------------------

async def test_patch_changes_fields_and_updated_at(api: Ingest) -> None:
    endpoint = await create_endpoint(api, description="old", metadata={"a": "1"})
    await asyncio.sleep(0.01)
    changes = {"url": "https://93.184.216.35/new", "event_types": ["invoice.*"],
               "description": None, "rate_limit_per_s": 20, "max_in_flight": 2,
               "metadata": {"b": "2"}}
    status, patched = await api.call("PATCH", f"/v1/endpoints/{endpoint['id']}", changes)
    assert status == 200, patched
    assert {k: patched[k] for k in changes} == changes
    assert "secret" not in patched
    assert patched["created_at"] == endpoint["created_at"]
    assert parse_ts(patched["updated_at"]) > parse_ts(endpoint["updated_at"])
    status, fetched = await api.call("GET", f"/v1/endpoints/{endpoint['id']}")
    assert (status, fetched) == (200, patched)


async def test_patch_can_clear_rate_limit_and_metadata(api: Ingest) -> None:
    endpoint = await create_endpoint(api, rate_limit_per_s=5, metadata={"a": "1"})
    status, patched = await api.call("PATCH", f"/v1/endpoints/{endpoint['id']}",
                                     {"rate_limit_per_s": None, "metadata": None})
    assert status == 200
    assert (patched["rate_limit_per_s"], patched["metadata"]) == (None, {})


async def test_empty_patch_changes_nothing(api: Ingest) -> None:
    endpoint = await create_endpoint(api)
    status, patched = await api.call("PATCH", f"/v1/endpoints/{endpoint['id']}", {})
    assert status == 200
    assert patched == {k: v for k, v in endpoint.items() if k != "secret"}


@pytest.mark.parametrize(("body", "param"), [
    ({"account_id": "other"}, "account_id"), ({"secret": "whsec_" + "A" * 40}, "secret"),
    ({"url": "http://127.0.0.1/"}, "url"), ({"url": "http://2130706433/"}, "url"),
    ({"url": "mailto:x@example.com"}, "url"), ({"enabled": None}, "enabled"),
    ({"event_types": ["a", 1]}, "event_types[1]"), ({"max_in_flight": 1.0}, "max_in_flight"),
    ({"status": "disabled"}, "status"), ({"disabled_reason": None}, "disabled_reason")])
async def test_patch_validation_errors_change_nothing(api: Ingest, body: dict[str, Any],
                                                      param: str) -> None:
    endpoint = await create_endpoint(api)
    status, data = await api.call("PATCH", f"/v1/endpoints/{endpoint['id']}", body)
    assert_error(status, data, 400, "invalid_request", param)
    status, fetched = await api.call("GET", f"/v1/endpoints/{endpoint['id']}")
    assert fetched == {k: v for k, v in endpoint.items() if k != "secret"}


async def test_disabling_records_manual_reason(api: Ingest) -> None:
    endpoint = await create_endpoint(api)
    status, patched = await api.call("PATCH", f"/v1/endpoints/{endpoint['id']}",
                                     {"enabled": False})
    assert status == 200
    assert (patched["enabled"], patched["status"], patched["disabled_reason"]) == (
        False, "disabled", "manual")


async def test_disabling_again_keeps_the_original_reason(api: Ingest,
                                                         db: asyncpg.Connection) -> None:
    endpoint = await create_endpoint(api)
    await db.execute("UPDATE endpoints SET enabled = false, disabled_reason = 'gone' "
                     "WHERE id = $1", endpoint["id"])
    status, patched = await api.call("PATCH", f"/v1/endpoints/{endpoint['id']}",
                                     {"enabled": False})
    assert status == 200
    assert (patched["status"], patched["disabled_reason"]) == ("disabled", "gone")


async def test_reenabling_clears_reason_and_resets_the_circuit(api: Ingest,
                                                               db: asyncpg.Connection) -> None:
    endpoint, bystander = await create_endpoint(api), await create_endpoint(api)
    await db.execute("UPDATE endpoints SET enabled = false, disabled_reason = 'gone' "
                     "WHERE id = $1", endpoint["id"])
    for endpoint_id in (endpoint["id"], bystander["id"]):
        await db.execute(
            """INSERT INTO endpoint_health (endpoint_id, consecutive_failures, failing_since,
                   circuit_open_until) VALUES ($1, 17, now() - interval '1 hour',
                   now() + interval '1 hour')""", endpoint_id)
    status, patched = await api.call("PATCH", f"/v1/endpoints/{endpoint['id']}",
                                     {"enabled": True})
    assert status == 200
    assert (patched["enabled"], patched["status"], patched["disabled_reason"]) == (
        True, "enabled", None)
    health = await db.fetchrow("SELECT * FROM endpoint_health WHERE endpoint_id = $1",
                               endpoint["id"])
    assert (health["consecutive_failures"], health["failing_since"],
            health["circuit_open_until"]) == (0, None, None)
    other = await db.fetchrow("SELECT * FROM endpoint_health WHERE endpoint_id = $1",
                              bystander["id"])
    assert other["consecutive_failures"] == 17  # only the re-enabled endpoint is reset


async def test_enabling_an_enabled_endpoint_keeps_its_circuit(api: Ingest,
                                                              db: asyncpg.Connection) -> None:
    endpoint = await create_endpoint(api)
    await db.execute("INSERT INTO endpoint_health (endpoint_id, consecutive_failures) "
                     "VALUES ($1, 3)", endpoint["id"])
    status, _ = await api.call("PATCH", f"/v1/endpoints/{endpoint['id']}", {"enabled": True})
    assert status == 200
    assert await db.fetchval("SELECT consecutive_failures FROM endpoint_health "
                             "WHERE endpoint_id = $1", endpoint["id"]) == 3


# --- DELETE ---------------------------------------------------------------------------------

async def insert_delivery(db: asyncpg.Connection, endpoint: dict[str, Any], status: str) -> str:
    event_id, delivery_id = new_id("evt"), new_id("dlv")
    now = datetime.now(UTC)
    await db.execute(
        "INSERT INTO events (id, account_id, type, body, created_at, delivery_count) "
        "VALUES ($1, $2, 'invoice.paid', '{}'::bytea, $3, 1)",
        event_id, endpoint["account_id"], now)
    await db.execute(
        """INSERT INTO deliveries (id, event_id, endpoint_id, account_id, status,
               next_attempt_at, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $6, $6)""",
        delivery_id, event_id, endpoint["id"], endpoint["account_id"], status, now)
    return delivery_id


async def test_delete_cancels_undelivered_deliveries(api: Ingest,
                                                     db: asyncpg.Connection) -> None:
    endpoint, survivor = await create_endpoint(api), await create_endpoint(api)
    statuses = ["pending", "retrying", "succeeded", "dead", "cancelled", "pending"]
    ids = {await insert_delivery(db, endpoint, s): s for s in statuses}
    other = await insert_delivery(db, survivor, "pending")
    status, data = await api.call("DELETE", f"/v1/endpoints/{endpoint['id']}")
    assert (status, data) == (204, None)
    rows = await db.fetch("SELECT id, status, next_attempt_at FROM deliveries "
                          "WHERE id = ANY($1::text[])", list(ids))
    expected = {"pending": "cancelled", "retrying": "cancelled"}
    assert {r["id"]: r["status"] for r in rows} == {
        i: expected.get(s, s) for i, s in ids.items()}
    assert all(r["next_attempt_at"] is None for r in rows if ids[r["id"]] in expected)
    assert await db.fetchval("SELECT status FROM deliveries WHERE id = $1", other) == "pending"
    assert await db.fetchval("SELECT deleted_at IS NOT NULL FROM endpoints WHERE id = $1",
                             endpoint["id"]) is True


async def test_deleted_endpoint_is_gone_everywhere(api: Ingest) -> None:
    endpoint = await create_endpoint(api)
    path = f"/v1/endpoints/{endpoint['id']}"
    assert (await api.call("DELETE", path))[0] == 204
    for method, suffix, body in [("GET", "", None), ("PATCH", "", {"enabled": True}),
                                 ("DELETE", "", None), ("GET", "/secret", None),
                                 ("POST", "/rotate-secret", {})]:
        status, data = await api.call(method, path + suffix, body)
        assert_error(status, data, 404, "not_found")
    status, listed = await api.call("GET", f"/v1/endpoints?account_id={endpoint['account_id']}")
    assert (status, listed["data"]) == (200, [])


# --- secrets -------------------------------------------------------------------------------

async def secret_row(db: asyncpg.Connection, endpoint_id: str) -> asyncpg.Record:
    row: asyncpg.Record = await db.fetchrow(
        "SELECT secret, previous_secret, previous_secret_expires_at FROM endpoints "
        "WHERE id = $1", endpoint_id)
    return row


@pytest.mark.parametrize(("body", "grace_s"), [
    (None, 86400), ({}, 86400), ({"grace_period_s": 60}, 60), ({"grace_period_s": 604800},
                                                                604800)])
async def test_rotation_keeps_the_old_secret_for_the_grace_period(
        api: Ingest, db: asyncpg.Connection, body: Any, grace_s: int) -> None:
    endpoint = await create_endpoint(api)
    before = datetime.now(UTC)
    status, data = await api.call("POST", f"/v1/endpoints/{endpoint['id']}/rotate-secret", body)
    after = datetime.now(UTC)
    assert status == 200, data
    assert list(data) == ["secret"]
    assert len(parse_secret(data["secret"])) == 32
    assert data["secret"] != endpoint["secret"]
    row = await secret_row(db, endpoint["id"])
    assert (row["secret"], row["previous_secret"]) == (data["secret"], endpoint["secret"])
    grace = timedelta(seconds=grace_s)
    slack = timedelta(seconds=1)
    assert before + grace - slack <= row["previous_secret_expires_at"] <= after + grace + slack
    status, current = await api.call("GET", f"/v1/endpoints/{endpoint['id']}/secret")
    assert (status, current) == (200, {"secret": data["secret"]})


async def test_rotation_without_grace_keeps_no_old_secret(api: Ingest,
                                                          db: asyncpg.Connection) -> None:
    endpoint = await create_endpoint(api)
    status, data = await api.call("POST", f"/v1/endpoints/{endpoint['id']}/rotate-secret",
                                  {"grace_period_s": 0})
    assert status == 200
    row = await secret_row(db, endpoint["id"])
    assert (row["secret"], row["previous_secret"], row["previous_secret_expires_at"]) == (
        data["secret"], None, None)


async def test_second_rotation_replaces_the_previous_secret(api: Ingest,
                                                            db: asyncpg.Connection) -> None:
    endpoint = await create_endpoint(api)
    path = f"/v1/endpoints/{endpoint['id']}/rotate-secret"
    _, first = await api.call("POST", path, {"grace_period_s": 100})
    _, second = await api.call("POST", path, {"grace_period_s": 100})
    row = await secret_row(db, endpoint["id"])
    assert (row["secret"], row["previous_secret"]) == (second["secret"], first["secret"])


@pytest.mark.parametrize("body", [{"grace_period_s": -1}, {"grace_period_s": 604801},
                                  {"grace_period_s": "10"}, {"grace_period_s": False},
                                  {"grace": 10}])
async def test_rotation_validation_changes_nothing(api: Ingest, db: asyncpg.Connection,
                                                   body: dict[str, Any]) -> None:
    endpoint = await create_endpoint(api)
    status, data = await api.call("POST", f"/v1/endpoints/{endpoint['id']}/rotate-secret", body)
    assert_error(status, data, 400, "invalid_request", next(iter(body)))
    row = await secret_row(db, endpoint["id"])
    assert (row["secret"], row["previous_secret"]) == (endpoint["secret"], None)
