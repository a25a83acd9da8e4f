"""The Endpoints API over real HTTP against real Postgres and broker (docs/api.md, "Endpoints")."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from shared.core.ids import is_valid_id, new_id
from shared.core.signing import parse_secret
from shared.core.timefmt import parse_ts
from tests.conftest import TEST_ADMIN_TOKEN
from tests.support.ingest_app import (
    PUBLIC_URL,
    Ingest,
    assert_error,
    create_endpoint,
    new_account,
)

INGEST_ENV = {"ALLOW_PRIVATE_TARGETS": "false"}  # the SSRF guard on: private targets refused


# --- create and read -------------------------------------------------------------------------

async def test_create_with_defaults(api: Ingest) -> None:
    acct = new_account()
    data = await create_endpoint(api, account_id=acct)
    assert is_valid_id(data["id"], "ep")
    assert len(parse_secret(data["secret"])) == 32
    assert data["secret"].startswith("whsec_")
    created = parse_ts(data["created_at"])
    assert abs(created - datetime.now(UTC)) < timedelta(seconds=30)
    assert data["created_at"] == data["updated_at"]
    assert data["created_at"].endswith("Z")
    expected = {"id": data["id"], "account_id": acct, "url": PUBLIC_URL, "event_types": ["*"],
                "description": None, "enabled": True, "status": "enabled",
                "disabled_reason": None, "rate_limit_per_s": None, "max_in_flight": 10,
                "metadata": {}, "created_at": data["created_at"],
                "updated_at": data["updated_at"]}
    assert {k: v for k, v in data.items() if k != "secret"} == expected
    status, fetched = await api.call("GET", f"/v1/endpoints/{data['id']}")
    assert status == 200
    assert fetched == expected  # no secret outside the create response


async def test_create_with_every_field(api: Ingest) -> None:
    secret = "whsec_" + base64.b64encode(b"k" * 24).decode()
    data = await create_endpoint(api, url="http://93.184.216.34:8080/x?y=1",
                        event_types=["invoice.*", "customer.created"], description="billing",
                        enabled=False, rate_limit_per_s=7, max_in_flight=1000,
                        metadata={"team": "billing", "env": "prod"}, secret=secret)
    assert data["secret"] == secret
    assert (data["enabled"], data["status"], data["disabled_reason"]) == (
        False, "disabled", "manual")
    assert data["event_types"] == ["invoice.*", "customer.created"]
    assert (data["rate_limit_per_s"], data["max_in_flight"]) == (7, 1000)
    assert data["metadata"] == {"team": "billing", "env": "prod"}
    assert data["url"] == "http://93.184.216.34:8080/x?y=1"
    status, body = await api.call("GET", f"/v1/endpoints/{data['id']}/secret")
    assert (status, body) == (200, {"secret": secret})


async def test_generated_secrets_are_distinct_and_stored(api: Ingest,
                                                         db: asyncpg.Connection) -> None:
    first, second = await create_endpoint(api), await create_endpoint(api)
    assert first["secret"] != second["secret"]
    stored = await db.fetchval("SELECT secret FROM endpoints WHERE id = $1", first["id"])
    assert stored == first["secret"]


# --- auth, content type, body shape -----------------------------------------------------------

@pytest.mark.parametrize("headers", [
    {}, {"Authorization": "Bearer wrong-key-123"}, {"Authorization": "test-key"},
    {"Authorization": "Basic dGVzdC1rZXk="}, {"Authorization": f"Bearer {TEST_ADMIN_TOKEN}"}])
@pytest.mark.parametrize(("method", "path"), [
    ("POST", "/v1/endpoints"), ("GET", "/v1/endpoints"), ("GET", "/v1/endpoints/{id}"),
    ("PATCH", "/v1/endpoints/{id}"), ("DELETE", "/v1/endpoints/{id}"),
    ("GET", "/v1/endpoints/{id}/secret"), ("POST", "/v1/endpoints/{id}/rotate-secret")])
async def test_every_route_needs_the_api_key(api: Ingest, headers: dict[str, str], method: str,
                                             path: str) -> None:
    endpoint = await create_endpoint(api)
    async with api.client.request(method, path.format(id=endpoint["id"]), json={},
                                  headers=headers) as response:
        assert_error(response.status, await response.json(), 401, "authentication_failed")
    status, _ = await api.call("GET", f"/v1/endpoints/{endpoint['id']}")
    assert status == 200  # nothing was deleted or changed


@pytest.mark.parametrize(("method", "path"), [
    ("POST", "/v1/endpoints"), ("PATCH", "/v1/endpoints/{id}"),
    ("POST", "/v1/endpoints/{id}/rotate-secret")])
@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded"])
async def test_other_content_types_are_415(api: Ingest, method: str, path: str,
                                           content_type: str) -> None:
    endpoint = await create_endpoint(api)
    status, data = await api.call(method, path.format(id=endpoint["id"]), None,
                                  data=b'{"grace_period_s": 0}',
                                  headers={"Content-Type": content_type})
    assert_error(status, data, 415, "unsupported_media_type")


@pytest.mark.parametrize("raw", [b"{not json", b"[1, 2]", b'"text"', b"null", b"", b"{} {}"])
@pytest.mark.parametrize(("method", "path"), [
    ("POST", "/v1/endpoints"), ("PATCH", "/v1/endpoints/{id}")])
async def test_bodies_that_are_not_json_objects_are_400(api: Ingest, raw: bytes, method: str,
                                                        path: str) -> None:
    endpoint = await create_endpoint(api)
    status, data = await api.call(method, path.format(id=endpoint["id"]), None, data=raw,
                                  headers={"Content-Type": "application/json"})
    assert_error(status, data, 400, "invalid_request")


CREATE_ERRORS: list[tuple[dict[str, Any], str]] = [
    ({"url": PUBLIC_URL}, "account_id"),
    ({"account_id": "a"}, "url"),
    ({"account_id": "bad id!", "url": PUBLIC_URL}, "account_id"),
    ({"account_id": "a" * 65, "url": PUBLIC_URL}, "account_id"),
    ({"account_id": "a", "url": "ftp://93.184.216.34/"}, "url"),
    ({"account_id": "a", "url": "https://example.com/" + "x" * 2040}, "url"),
    ({"account_id": "a", "url": "not a url"}, "url"),
    ({"account_id": "a", "url": PUBLIC_URL, "event_types": []}, "event_types"),
    ({"account_id": "a", "url": PUBLIC_URL, "event_types": ["ok", "no*pe"]}, "event_types[1]"),
    ({"account_id": "a", "url": PUBLIC_URL, "event_types": ["a", "a"]}, "event_types[1]"),
    ({"account_id": "a", "url": PUBLIC_URL, "description": ["x"]}, "description"),
    ({"account_id": "a", "url": PUBLIC_URL, "enabled": "yes"}, "enabled"),
    ({"account_id": "a", "url": PUBLIC_URL, "rate_limit_per_s": 0}, "rate_limit_per_s"),
    ({"account_id": "a", "url": PUBLIC_URL, "rate_limit_per_s": True}, "rate_limit_per_s"),
    ({"account_id": "a", "url": PUBLIC_URL, "max_in_flight": 1001}, "max_in_flight"),
    ({"account_id": "a", "url": PUBLIC_URL, "max_in_flight": 0}, "max_in_flight"),
    ({"account_id": "a", "url": PUBLIC_URL, "secret": "whsec_c2hvcnQ="}, "secret"),
    ({"account_id": "a", "url": PUBLIC_URL, "secret": "sk_" + "A" * 40}, "secret"),
    ({"account_id": "a", "url": PUBLIC_URL, "metadata": {"k": 5}}, "metadata.k"),
    ({"account_id": "a", "url": PUBLIC_URL, "metadata": [1]}, "metadata"),
    ({"account_id": "a", "url": PUBLIC_URL, "surprise": 1}, "surprise"),
]


@pytest.mark.parametrize(("body", "param"), CREATE_ERRORS)
async def test_create_validation_errors(api: Ingest, db: asyncpg.Connection,
                                        body: dict[str, Any], param: str) -> None:
    before = await db.fetchval("SELECT count(*) FROM endpoints")
    status, data = await api.call("POST", "/v1/endpoints", body)
    assert_error(status, data, 400, "invalid_request", param)
    assert await db.fetchval("SELECT count(*) FROM endpoints") == before


async def test_unknown_query_parameters_are_refused(api: Ingest) -> None:
    endpoint = await create_endpoint(api)
    status, data = await api.call("GET", f"/v1/endpoints/{endpoint['id']}?expand=x")
    assert_error(status, data, 400, "invalid_request", "expand")


# --- 404s ---------------------------------------------------------------------------------

MISSING_IDS = [new_id("ep"), "ep_123", "nonsense", new_id("evt"), "ep_" + "u" * 26,
               "ep_" + "Z" * 26]


@pytest.mark.parametrize("endpoint_id", MISSING_IDS)
@pytest.mark.parametrize(("method", "suffix", "body"), [
    ("GET", "", None), ("PATCH", "", {"description": "x"}), ("DELETE", "", None),
    ("GET", "/secret", None), ("POST", "/rotate-secret", {})])
async def test_unknown_and_malformed_ids_are_404(api: Ingest, endpoint_id: str, method: str,
                                                 suffix: str, body: Any) -> None:
    status, data = await api.call(method, f"/v1/endpoints/{endpoint_id}{suffix}", body)
    assert_error(status, data, 404, "not_found")
