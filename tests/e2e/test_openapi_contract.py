"""Schemathesis against the running ingest and admin services, every operation of their
OpenAPI documents (docs/openapi/), with a bounded number of examples per operation.

Checks: no 5xx, every status documented, every response (errors included, so every error
body is ``{"error": {"type", "message", "param"}}``) matches its schema, content types and
headers as documented, and data that violates the request schema is refused (the models that
generate the documents are the ones that validate). Real ids are supplied for the routes
that need an existing object (an endpoint, its feed token, an event, a delivery, a replay),
so generated requests reach the handlers instead of stopping at a 404; a dispatcher with a
one-attempt schedule first turns the event's deliveries into dead letters with an attempt
each, so the lists and views answer with data to check against their schemas.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from deploy.embedded.services import ServiceProcess

REPO = Path(__file__).resolve().parents[2]
SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
HOOKS = REPO / "tests" / "support" / "schemathesis_hooks.py"  # a CPython 3.11 bug's workaround
CHECKS = ("not_a_server_error,status_code_conformance,content_type_conformance,"
          "response_headers_conformance,response_schema_conformance,negative_data_rejection")
MAX_EXAMPLES = 8
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def call(base: str, method: str, path: str, token: str, body: Any = None) -> tuple[int, Any]:
    """One JSON request; (status, parsed body or None)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(base + path, data=data, method=method, headers={
        "Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    try:
        with _NO_PROXY.open(request, timeout=30) as response:
            raw = response.read()
            return response.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def operations_config(token: str, by_operation: dict[str, dict[str, Any]]) -> str:
    """A schemathesis TOML config: the bearer token for every operation that does not bring
    its own ``Authorization`` header, and per operation id its fixed parameters and
    headers."""
    own = [name for name, settings in by_operation.items()
           if "Authorization" in settings.get("headers", {})]
    excluded = ", ".join(f'"{name}"' for name in own)
    lines = ["[[operations]]", f"exclude-operation-id = [{excluded}]",
             f'headers = {{ Authorization = "Bearer {token}" }}', ""]
    for operation_id, settings in by_operation.items():
        lines += ["[[operations]]", f'include-operation-id = "{operation_id}"']
        for table in ("parameters", "headers"):
            if table in settings:
                pairs = ", ".join(f'"{k}" = "{v}"' for k, v in settings[table].items())
                lines.append(f"{table} = {{ {pairs} }}")
        lines.append("")
    return "\n".join(lines)


def run_schemathesis(base: str, config: str, tmp: Path, name: str) -> str:
    """Run the CLI against ``base``; fail with its report unless every check passed for
    every operation of the served document."""
    config_path = tmp / f"{name}.toml"
    config_path.write_text(config)
    command = [str(SCHEMATHESIS), "--config-file", str(config_path), "run",
               f"{base}/openapi.json", "--checks", CHECKS, "--max-examples", str(MAX_EXAMPLES),
               "--phases", "coverage,fuzzing", "--generation-database", "none",
               "--workers", "2", "--seed", "20261204", "--request-timeout", "30",
               "--no-color", "--report", "junit", "--report-dir", str(tmp / f"{name}-report")]
    done = subprocess.run(command, capture_output=True, text=True, timeout=240, cwd=tmp,
                          env={"PATH": str(SCHEMATHESIS.parent), "NO_PROXY": "*",
                               "HOME": str(tmp), "SCHEMATHESIS_HOOKS": str(HOOKS)})
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"schemathesis against {name} failed:\n{output[-12000:]}"
    return output


def served_document(base: str) -> dict[str, Any]:
    with _NO_PROXY.open(f"{base}/openapi.json", timeout=10) as response:
        assert response.headers["Content-Type"].startswith("application/json")
        document: dict[str, Any] = json.loads(response.read())
    return document


def wait_for_dead_letters(admin_base: str, token: str, event_id: str, count: int) -> None:
    """Until the event's ``count`` deliveries are dead letters (one failed attempt each)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        status, page = call(admin_base, "GET", f"/admin/v1/dead-letters?event_id={event_id}",
                            token)
        assert status == 200, page
        if len(page["data"]) == count:
            return
        time.sleep(0.5)
    raise AssertionError(f"no {count} dead letters for {event_id}: {page}")


@pytest.mark.timeout(600)  # two runs of up to 240 s each on a loaded machine; 35 s when quiet
def test_running_services_honour_their_openapi_documents(
        run_service: Any, service_env: Any, api_key: str, admin_token: str,
        tmp_path: Path) -> None:
    ingest: ServiceProcess = run_service("ingest")
    admin: ServiceProcess = run_service("dlq_replay")
    # one attempt, to a port nothing listens on: real attempts and dead letters to list
    run_service("dispatcher", service_env(RETRY_SCHEDULE="0"))
    base, admin_base = ingest.base_url, admin.base_url

    for url, name in ((base, "ingest"), (admin_base, "admin")):
        checked_in = json.loads((REPO / "docs" / "openapi" / f"{name}.json").read_text())
        assert served_document(url) == checked_in

    # objects the generated requests can reach
    endpoint_body = {"account_id": "acct_st", "url": "http://127.0.0.1:9/hook",
                     "event_types": ["invoice.*"]}
    status, kept = call(base, "POST", "/v1/endpoints", api_key, endpoint_body)
    assert status == 201, kept
    status, doomed = call(base, "POST", "/v1/endpoints", api_key, endpoint_body)
    assert status == 201, doomed
    status, fed = call(base, "POST", "/v1/endpoints", api_key, endpoint_body)  # never rotated
    assert status == 201, fed
    status, event = call(base, "POST", "/v1/events", api_key, {
        "account_id": "acct_st", "type": "invoice.paid", "data": {"amount": 1}})
    assert status == 202 and event["delivery_count"] == 3, event
    wait_for_dead_letters(admin_base, admin_token, event["id"], 3)
    status, detail = call(base, "GET", f"/v1/events/{event['id']}", api_key)
    assert status == 200, detail
    delivery_id = detail["deliveries"][0]["id"]
    status, feed = call(base, "GET", f"/v1/endpoints/{fed['id']}/feed-token", api_key)
    assert status == 200, feed
    status, replay = call(admin_base, "POST", "/admin/v1/replays", admin_token,
                          {"reason": "contract test", "filter": {"account_id": "acct_st"}})
    assert status == 202, replay

    kept_id = {"parameters": {"endpoint_id": kept["id"]}}
    ingest_config = operations_config(api_key, {
        "get_endpoint": kept_id, "update_endpoint": kept_id, "get_endpoint_secret": kept_id,
        "rotate_endpoint_secret": kept_id,
        "get_feed_token": {"parameters": {"endpoint_id": fed["id"]}},
        "delete_endpoint": {"parameters": {"endpoint_id": doomed["id"]}},
        "read_feed": {"parameters": {"endpoint_id": fed["id"]},
                      "headers": {"Authorization": f"Bearer {feed['token']}"}},
        "get_event": {"parameters": {"event_id": event["id"]}},
        "list_attempts": {"parameters": {"delivery_id": delivery_id}},
    })
    admin_config = operations_config(admin_token, {
        "get_event_with_attempts": {"parameters": {"event_id": event["id"]}},
        "replay_event": {"parameters": {"event_id": event["id"]}},
        "get_replay": {"parameters": {"id": replay["id"]}},
        "cancel_replay": {"parameters": {"id": replay["id"]}},
    })
    for url, config, name in ((base, ingest_config, "ingest"),
                              (admin_base, admin_config, "admin")):
        # every operation but GET /openapi.json, which schemathesis loads instead of testing
        operations = sum(len(item) for item in served_document(url)["paths"].values()) - 1
        output = run_schemathesis(url, config, tmp_path, name)
        assert f"Tested: {operations}" in output, output[-3000:]
        assert "Authentication failed" not in output, output[-3000:]


def test_ids_and_times_at_the_calendar_edges_are_client_errors(
        run_service: Any, api_key: str, admin_token: str) -> None:
    """What the fuzzing found: an id whose ULID time is past year 9999 was a 503 (the
    retention check built a datetime from it); a year below 1000 was written with three
    digits; a window ending within a day of year 1 was a 503."""
    ingest: ServiceProcess = run_service("ingest")
    admin: ServiceProcess = run_service("dlq_replay")
    far = "7ZZZZZZZZZZZZZZZZZZZZZZZZZ"
    for base, token, path in (
            (ingest.base_url, api_key, f"/v1/events/evt_{far}"),
            (ingest.base_url, api_key, f"/v1/deliveries/dlv_{far}/attempts"),
            (admin.base_url, admin_token, f"/admin/v1/events/evt_{far}")):
        status, body = call(base, "GET", path, token)
        assert status == 404 and body["error"]["type"] == "not_found", (path, body)
    status, ledger = call(admin.base_url, "GET",
                          "/admin/v1/ledger?to=0322-09-25T17%3A20%3A43.203-02%3A23", admin_token)
    assert status == 200, ledger
    assert (ledger["from"], ledger["to"]) == ("0322-09-24T19:43:43.203Z",
                                              "0322-09-25T19:43:43.203Z")
    status, body = call(admin.base_url, "GET", "/admin/v1/ledger?to=0001-01-01T10%3A00%3A00Z",
                        admin_token)
    assert (status, body["error"]["param"]) == (400, "to")
    status, body = call(admin.base_url, "GET", "/admin/v1/dead-letters?type=%C3%97", admin_token)
    assert (status, body["error"]["param"]) == (400, "type")
