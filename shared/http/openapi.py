"""OpenAPI 3.1 documents built from the msgspec models that validate requests.

A service lists its routes as :class:`Operation` values: path, method, the request model
(the same class :func:`shared.http.models.convert_body` checks bodies with), parameters and
the answers with their response models. :func:`build_document` turns them into one OpenAPI
3.1 document: every model becomes a component through ``msgspec.json.schema_components``,
every error answer refers to the one error body ``{"error": {"type", "message", "param"}}``.
:func:`add_openapi_route` serves the document at ``GET /openapi.json`` without credentials
(:data:`shared.http.auth.OPEN_PATHS`). The documents are also checked in under
``docs/openapi/`` (``make openapi`` writes them; a test fails when they drift).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import msgspec
import orjson
from aiohttp import web

from shared.models.common import ErrorBody, Health

OPENAPI_PATH = "/openapi.json"
REF_TEMPLATE = "#/components/schemas/{name}"
JSON = "application/json"

ERRORS: dict[int, tuple[str, str]] = {
    400: ("InvalidRequest",
          "invalid_request: a field, parameter or header is wrong (param names it)"),
    401: ("AuthenticationFailed", "authentication_failed: missing or wrong credentials"),
    403: ("Forbidden", "forbidden: the key may not act for this account"),
    404: ("NotFound", "not_found: no such object (a malformed id too)"),
    409: ("Conflict", "conflict, or idempotency_conflict: the key was used for another request"),
    413: ("PayloadTooLarge", "payload_too_large: the body is over its limit"),
    415: ("UnsupportedMediaType",
          "unsupported_media_type: the body's Content-Type is not accepted"),
    429: ("RateLimited", "rate_limited: too much in flight; retry after Retry-After seconds"),
    503: ("Unavailable",
          "unavailable: a dependency is down or the service is stopping; retry later"),
}
RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before retrying.",
                               "schema": {"type": "integer"}}}


@dataclass(frozen=True)
class Param:
    """A query, path or header parameter; ``schema`` is a Python type msgspec understands."""

    name: str
    location: Literal["query", "path", "header"]
    schema: Any
    description: str
    required: bool = False


@dataclass(frozen=True)
class Answer:
    """A success answer: status, meaning and model (None: no body, or ``content_type`` text)."""

    status: int
    description: str
    model: Any = None
    content_type: str = JSON
    headers: tuple[str, ...] = ()


@dataclass(frozen=True)
class Operation:
    """One route of a service's JSON API.

    ``body`` is the request model (or a type for a non-JSON ``body_types``); ``errors`` the
    error statuses it may answer besides 400, 401 (with ``auth``) and 503, which every route
    may."""

    method: Literal["get", "post", "patch", "delete"]
    path: str
    operation_id: str
    summary: str
    tag: str
    answers: tuple[Answer, ...]
    params: tuple[Param, ...] = ()
    body: Any = None
    body_required: bool = True
    body_types: tuple[str, ...] = (JSON,)
    errors: tuple[int, ...] = ()
    auth: bool = True
    description: str = ""


@dataclass(frozen=True)
class ApiInfo:
    """The document's ``info`` and security scheme."""

    title: str
    version: str
    description: str
    security_description: str
    tags: Sequence[tuple[str, str]] = field(default_factory=tuple)


class _Schemas:
    """Collects every type first, then resolves them in one ``schema_components`` call."""

    def __init__(self) -> None:
        self._types: list[Any] = []

    def add(self, tp: Any) -> int:
        self._types.append(tp)
        return len(self._types) - 1

    def resolve(self) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        schemas, components = msgspec.json.schema_components(self._types,
                                                             ref_template=REF_TEMPLATE)
        return list(schemas), dict(components)


def _error_statuses(op: Operation) -> list[int]:
    statuses = {400, 503, *op.errors}
    if op.auth:
        statuses.add(401)
    if op.body is not None:
        statuses.update({413, 415, 429})
    return sorted(statuses)


def _error_response(status: int) -> dict[str, Any]:
    """The shared response component of an error status."""
    response: dict[str, Any] = {
        "description": ERRORS[status][1],
        "content": {JSON: {"schema": {"$ref": REF_TEMPLATE.format(name="ErrorBody")}}}}
    if status in (429, 503):
        response["headers"] = RETRY_AFTER
    return response


def build_document(info: ApiInfo, operations: Iterable[Operation],
                   extra_models: Iterable[Any] = ()) -> dict[str, Any]:
    """The OpenAPI 3.1 document of ``operations`` (paths in the order given).

    ``extra_models`` become components too: models that schemas refer to by name only."""
    ops = list(operations)
    schemas = _Schemas()
    schemas.add(ErrorBody)  # the component every error answer refers to
    for model in extra_models:
        schemas.add(model)
    pending: list[tuple[Operation, dict[str, Any], list[tuple[dict[str, Any], int]]]] = []
    for op in ops:
        spec: dict[str, Any] = {"operationId": op.operation_id, "summary": op.summary,
                                "tags": [op.tag]}
        if op.description:
            spec["description"] = op.description
        slots: list[tuple[dict[str, Any], int]] = []
        if op.params:
            spec["parameters"] = []
            for param in op.params:
                entry: dict[str, Any] = {"name": param.name, "in": param.location,
                                         "description": param.description,
                                         "required": param.required or param.location == "path"}
                spec["parameters"].append(entry)
                slots.append((entry, schemas.add(param.schema)))
        if op.body is not None:
            content: dict[str, Any] = {}
            for media in op.body_types:
                content[media] = {}
                slots.append((content[media], schemas.add(op.body)))
            spec["requestBody"] = {"required": op.body_required, "content": content}
        responses: dict[str, Any] = {}
        for answer in op.answers:
            response: dict[str, Any] = {"description": answer.description}
            if answer.headers:
                response["headers"] = {name: {"schema": {"type": "string"}}
                                       for name in answer.headers}
            if answer.model is not None:
                media_entry: dict[str, Any] = {}
                response["content"] = {answer.content_type: media_entry}
                slots.append((media_entry, schemas.add(answer.model)))
            responses[str(answer.status)] = response
        for status in _error_statuses(op):
            responses.setdefault(str(status),
                                 {"$ref": f"#/components/responses/{ERRORS[status][0]}"})
        spec["responses"] = responses
        if not op.auth:
            spec["security"] = []
        pending.append((op, spec, slots))

    resolved, components = schemas.resolve()
    paths: dict[str, dict[str, Any]] = {}
    for op, spec, slots in pending:
        for target, index in slots:
            target["schema"] = resolved[index]
        paths.setdefault(op.path, {})[op.method] = spec
    return {
        "openapi": "3.1.0",
        "info": {"title": info.title, "version": info.version, "description": info.description},
        "tags": [{"name": name, "description": text} for name, text in info.tags],
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "schemas": _plain_descriptions(dict(sorted(components.items()))),
            "responses": {name: _error_response(status)
                          for status, (name, _) in sorted(ERRORS.items())},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                           "description": info.security_description}},
        },
    }


def service_operations(tag: str) -> tuple[Operation, ...]:
    """The routes every service serves without credentials: health, readiness, metrics and
    this document."""
    return (
        Operation("get", "/healthz", f"{tag}_healthz", "Liveness: the process answers", tag,
                  (Answer(200, "Alive", Health),), auth=False),
        Operation("get", "/readyz", f"{tag}_readyz",
                  "Readiness: Postgres and Kafka reachable", tag,
                  (Answer(200, "Ready", Health),), auth=False),
        Operation("get", "/metrics", f"{tag}_metrics", "Prometheus metrics (text format)", tag,
                  (Answer(200, "The metrics", str, content_type="text/plain"),), auth=False),
        Operation("get", OPENAPI_PATH, f"{tag}_openapi", "This document", tag,
                  (Answer(200, "The OpenAPI 3.1 document", dict[str, Any]),), auth=False),
    )


_ROLE_RE = re.compile(r":[a-z]+:`~?([^`]+)`")


def _plain(text: str) -> str:
    """A docstring as a description: reST roles and double backticks become Markdown code,
    lines rejoined into paragraphs."""
    text = _ROLE_RE.sub(lambda m: f"`{m.group(1).rsplit('.', 1)[-1]}`", text)
    text = text.replace("``", "`")
    return "\n\n".join(" ".join(line.strip() for line in paragraph.splitlines())
                         for paragraph in text.split("\n\n"))


def _plain_descriptions(node: Any) -> Any:
    """``node`` with every ``description`` string made plain (see :func:`_plain`)."""
    if isinstance(node, dict):
        return {key: _plain(value) if key == "description" and isinstance(value, str)
                else _plain_descriptions(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_plain_descriptions(item) for item in node]
    return node


def encode_document(document: dict[str, Any]) -> bytes:
    """The document as checked in: indented, keys in the order built, a final newline."""
    return orjson.dumps(document, option=orjson.OPT_INDENT_2) + b"\n"


def add_openapi_route(app: web.Application, document: dict[str, Any]) -> None:
    """Serve ``document`` at ``GET /openapi.json`` (encoded once; no credentials needed)."""
    body = orjson.dumps(document)

    async def openapi(_: web.Request) -> web.Response:
        return web.Response(body=body, content_type=JSON)

    app.router.add_get(OPENAPI_PATH, openapi)
