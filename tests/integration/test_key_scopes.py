"""API keys limited to accounts (``acct_a+acct_b:KEY``), enforced on every ingest route: a
foreign object is 404 (as if missing), a foreign ``account_id`` is 403, listing needs an
``account_id``; an unscoped key still reaches every account."""

from __future__ import annotations

from typing import Any

from tests.support.ingest_app import (
    PUBLIC_URL,
    Ingest,
    assert_error,
    new_account,
)

ALL_KEY, SCOPED_KEY = "all-accounts-key-1", "scoped-key-ab-1"


# the scoped key's accounts are fixed names: every test of this module shares them
INGEST_ENV = {"API_KEYS": f"{ALL_KEY},acct_scope_a+acct_scope_b:{SCOPED_KEY}"}


async def scoped(api: Ingest, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    return await api.call(method, path, body, headers={"Authorization": f"Bearer {SCOPED_KEY}"})


async def _foreign_world(api: Ingest) -> tuple[str, dict[str, Any], str, str]:
    """An account outside the scope with an endpoint, an event and its delivery (made with
    the unscoped key)."""
    foreign = new_account()
    status, endpoint = await api.call("POST", "/v1/endpoints",
                                      {"account_id": foreign, "url": PUBLIC_URL})
    assert status == 201, endpoint
    status, event = await api.call("POST", "/v1/events", {
        "account_id": foreign, "type": "invoice.paid", "data": {"n": 1}})
    assert status == 202 and event["delivery_count"] == 1, event
    _, full = await api.call("GET", f"/v1/events/{event['id']}")
    return foreign, endpoint, event["id"], full["deliveries"][0]["id"]


async def test_foreign_objects_are_not_found_for_a_scoped_key(api: Ingest) -> None:
    _, endpoint, event_id, delivery_id = await _foreign_world(api)
    ep = endpoint["id"]
    for method, path, body in [
        ("GET", f"/v1/endpoints/{ep}", None),
        ("PATCH", f"/v1/endpoints/{ep}", {"description": "taken over"}),
        ("GET", f"/v1/endpoints/{ep}/secret", None),
        ("POST", f"/v1/endpoints/{ep}/rotate-secret", {"grace_period_s": 0}),
        ("DELETE", f"/v1/endpoints/{ep}", None),
        ("GET", f"/v1/events/{event_id}", None),
        ("GET", f"/v1/deliveries/{delivery_id}/attempts", None),
    ]:
        status, data = await scoped(api, method, path, body)
        assert_error(status, data, 404, "not_found")
    # nothing changed: the unscoped key still sees the endpoint as it was, with its secret
    status, still = await api.call("GET", f"/v1/endpoints/{ep}")
    assert status == 200 and still["description"] == endpoint["description"]
    _, secret = await api.call("GET", f"/v1/endpoints/{ep}/secret")
    assert secret["secret"] == endpoint["secret"]


async def test_foreign_account_ids_are_forbidden(api: Ingest) -> None:
    foreign = new_account()
    status, data = await scoped(api, "POST", "/v1/endpoints",
                                {"account_id": foreign, "url": PUBLIC_URL})
    assert_error(status, data, 403, "forbidden", "account_id")
    status, data = await scoped(api, "POST", "/v1/events",
                                {"account_id": foreign, "type": "a.b", "data": {}})
    assert_error(status, data, 403, "forbidden", "account_id")
    for path in [f"/v1/endpoints?account_id={foreign}", f"/v1/events?account_id={foreign}",
                 "/v1/endpoints", "/v1/events"]:
        status, data = await scoped(api, "GET", path)
        assert_error(status, data, 403, "forbidden", "account_id")
    _, listed = await api.call("GET", f"/v1/events?account_id={foreign}")
    assert listed["data"] == []  # the refused event was never stored
    status, data = await scoped(api, "GET", "/v1/no-such-route")
    assert_error(status, data, 404, "not_found")  # an unknown route is not a scope question


async def test_a_scoped_key_works_inside_its_accounts(api: Ingest) -> None:
    status, endpoint = await scoped(api, "POST", "/v1/endpoints",
                                    {"account_id": "acct_scope_b", "url": PUBLIC_URL})
    assert status == 201, endpoint
    ep = endpoint["id"]
    status, patched = await scoped(api, "PATCH", f"/v1/endpoints/{ep}", {"description": "mine"})
    assert status == 200 and patched["description"] == "mine"
    status, secret = await scoped(api, "GET", f"/v1/endpoints/{ep}/secret")
    assert status == 200 and secret["secret"] == endpoint["secret"]
    status, listed = await scoped(api, "GET", "/v1/endpoints?account_id=acct_scope_b")
    assert status == 200 and ep in [e["id"] for e in listed["data"]]
    assert {e["account_id"] for e in listed["data"]} == {"acct_scope_b"}
    status, event = await scoped(api, "POST", "/v1/events", {
        "account_id": "acct_scope_b", "type": "invoice.paid", "data": {}})
    assert status == 202 and event["delivery_count"] >= 1
    status, shown = await scoped(api, "GET", f"/v1/events/{event['id']}")
    assert status == 200 and shown["account_id"] == "acct_scope_b"
    delivery_id = shown["deliveries"][0]["id"]
    status, _ = await scoped(api, "GET", f"/v1/deliveries/{delivery_id}/attempts")
    assert status == 200
    status, _ = await scoped(api, "DELETE", f"/v1/endpoints/{ep}")
    assert status == 204


async def test_batch_items_of_foreign_accounts_fail_alone(api: Ingest) -> None:
    foreign = new_account()
    status, data = await scoped(api, "POST", "/v1/events/batch", {"events": [
        {"account_id": "acct_scope_a", "type": "a.b", "data": {"n": 0}},
        {"account_id": foreign, "type": "a.b", "data": {"n": 1}},
    ]})
    assert status == 202, data
    first, second = data["data"]
    assert first["account_id"] == "acct_scope_a" and first["id"].startswith("evt_")
    assert second == {"error": {"type": "forbidden", "param": "events[1].account_id",
                                "message": second["error"]["message"]}}
    assert "acct_scope_a, acct_scope_b" in second["error"]["message"]
