"""The OpenAPI documents: checked in exactly as the code generates them, covering every JSON
route each service registers, errors in the contract's format, request models strict."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from services.dlq_replay import openapi as admin_openapi
from services.ingest import openapi as ingest_openapi
from services.ingest.feed_api import FEED_PREFIX
from shared.http.openapi import encode_document

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs" / "openapi"
ROUTE_RE = re.compile(r"router\.add_(get|post|patch|delete|put)\(\s*([^,]+),")
NOT_JSON_API = ("/console", "/portal", "/hook")  # browser pages; a test receiver
SERVICES = {"ingest": (ingest_openapi, ["services/ingest"]),
            "admin": (admin_openapi, ["services/dlq_replay"])}
COMMON = ["shared/http/health.py", "shared/http/openapi.py"]
METHODS = ("get", "post", "patch", "delete", "put")


def registered_routes(folders: list[str]) -> set[tuple[str, str]]:
    """(method, path) of every ``router.add_*`` call in the folders' sources."""
    found: set[tuple[str, str]] = set()
    files = [p for folder in folders for p in (REPO / folder).rglob("*.py")]
    files += [REPO / name for name in COMMON]
    for path in files:
        for method, expr in ROUTE_RE.findall(path.read_text()):
            expr = expr.strip()
            if expr == "OPENAPI_PATH":
                path_text = "/openapi.json"
            elif expr.startswith("FEED_PREFIX"):
                path_text = FEED_PREFIX + expr.split("+", 1)[1].strip().strip('"')
            else:
                assert expr.startswith('"') and expr.endswith('"'), f"{path}: {expr}"
                path_text = expr.strip('"')
            if not path_text.startswith(NOT_JSON_API):
                found.add((method, path_text))
    return found


def documented(doc: dict[str, Any]) -> set[tuple[str, str]]:
    return {(method, path) for path, item in doc["paths"].items() for method in item
            if method in METHODS}


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_checked_in_document_is_what_the_code_generates(name: str) -> None:
    module, _ = SERVICES[name]
    checked_in = (DOCS / f"{name}.json").read_bytes()
    assert checked_in == encode_document(module.document()), (
        f"docs/openapi/{name}.json is out of date: run `make openapi`")


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_every_registered_route_is_documented_and_nothing_else(name: str) -> None:
    module, folders = SERVICES[name]
    routes = registered_routes(folders)
    assert len(routes) >= 10
    assert documented(module.document()) == routes


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_every_operation_documents_its_errors_in_the_contract_format(name: str) -> None:
    module, _ = SERVICES[name]
    doc = module.document()
    assert doc["openapi"] == "3.1.0"
    error = doc["components"]["schemas"]["ErrorBody"]
    assert error["required"] == ["error"] and error["additionalProperties"] is False
    detail = doc["components"]["schemas"]["ErrorDetail"]
    assert set(detail["required"]) == {"type", "message", "param"}
    for path, item in doc["paths"].items():
        for method, op in item.items():
            responses = op["responses"]
            assert any(code.startswith("2") for code in responses), (method, path)
            errors = {code: r for code, r in responses.items() if code[0] in "45"}
            assert {"400", "503"} <= set(errors), (method, path)
            for response in errors.values():
                name_ = response["$ref"].rsplit("/", 1)[1]
                shared = doc["components"]["responses"][name_]
                schema = shared["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/ErrorBody"}
            if op.get("security") != []:
                assert "401" in errors, (method, path)
            body = op.get("requestBody", {}).get("content", {}).get("application/json")
            if body is not None:
                ref = body["schema"]["$ref"].rsplit("/", 1)[1]
                assert doc["components"]["schemas"][ref]["additionalProperties"] is False


def test_request_models_state_their_limits() -> None:
    schemas = ingest_openapi.document()["components"]["schemas"]
    create = schemas["EndpointCreate"]
    assert set(create["required"]) == {"account_id", "url"}
    assert create["properties"]["max_in_flight"]["maximum"] == 1000
    assert create["properties"]["event_types"]["maxItems"] == 100
    event = schemas["EventCreate"]
    assert set(event["required"]) == {"account_id", "type", "data"}
    assert event["properties"]["account_id"]["pattern"] == "^[A-Za-z0-9_-]{1,64}$"
    assert schemas["EventBatch"]["properties"]["events"]["maxItems"] == 500
    admin = admin_openapi.document()["components"]["schemas"]
    assert admin["BulkReplay"]["properties"]["max_per_second"]["maximum"] == 10000
    assert admin["ReplayFilterBody"]["additionalProperties"] is False
