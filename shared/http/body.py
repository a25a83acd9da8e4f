"""Reading request bodies to the contract: JSON objects only, bounded size, no unknown fields."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson
from aiohttp import web
from aiohttp.web_protocol import RequestPayloadError

from shared.core.errors import InvalidRequest, PayloadTooLarge, UnsupportedMediaType
from shared.http.limits import BODY_RESERVATION, BodyDeadlineExceeded


async def read_body_bytes(request: web.Request, max_bytes: int) -> bytes:
    """The raw body, refusing with 413 as soon as it exceeds ``max_bytes``.

    A declared Content-Length over the limit is refused before anything is read; a chunked
    body is read incrementally and refused the moment it crosses the limit. The bytes are
    held in the request's body budget (429 when the process is already holding too much,
    see :mod:`shared.http.limits`); a body that misses its deadline, or whose chunked framing
    is broken, is a 400.
    """
    declared = request.content_length
    if declared is not None and declared > max_bytes:
        raise PayloadTooLarge(f"request body is {declared} bytes; the limit is {max_bytes}")
    reservation = request.get(BODY_RESERVATION)
    if reservation is not None and declared:
        reservation.grow(declared)
    chunks: list[bytes] = []
    size = 0
    while True:
        try:
            chunk = await request.content.readany()
        except BodyDeadlineExceeded as exc:
            raise InvalidRequest(str(exc)) from exc
        except RequestPayloadError as exc:
            raise InvalidRequest("the request body is malformed (broken chunked encoding or "
                                 "a body shorter than its Content-Length)") from exc
        if not chunk:
            break
        size += len(chunk)
        if size > max_bytes:
            raise PayloadTooLarge(f"request body exceeds the limit of {max_bytes} bytes")
        if reservation is not None and declared is None:
            reservation.grow(len(chunk))
        chunks.append(chunk)
    return b"".join(chunks)


def check_json_content_type(request: web.Request) -> None:
    """415 unless the request declares ``application/json`` (charset parameters allowed)."""
    if request.content_type != "application/json":
        raise UnsupportedMediaType(
            f"Content-Type must be application/json, not {request.content_type or 'missing'}")


def parse_json_object(raw: bytes) -> dict[str, Any]:
    """Parse ``raw`` as a JSON object; 400 otherwise."""
    if not raw:
        raise InvalidRequest("request body is empty; a JSON object is required")
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"request body is not valid JSON: {exc.msg}") from exc
    if not isinstance(value, dict):
        raise InvalidRequest("request body must be a JSON object")
    if b"\\u0000" in raw:
        _refuse_nul(value)
    return value


def _refuse_nul(body: dict[str, Any]) -> None:
    """400 naming the first field whose string (or member name) holds NUL: Postgres ``text``
    and ``jsonb`` cannot store it, so it would fail deep in a transaction (503) otherwise.
    (Event ``data`` is not read here: it is stored as bytes and keeps its NUL escapes.)"""
    stack: list[tuple[Any, str]] = [(body, "")]
    while stack:
        value, path = stack.pop()
        if isinstance(value, str) and "\x00" in value:
            raise InvalidRequest(f"{path} must not contain NUL (\\u0000)", param=path)
        if isinstance(value, dict):
            for name, child in value.items():
                if "\x00" in name:
                    where = f" in {path}" if path else ""
                    raise InvalidRequest(f"a member name{where} contains NUL (\\u0000)",
                                         param=path or None)
                stack.append((child, f"{path}.{name}" if path else name))
        elif isinstance(value, list):
            stack.extend((child, f"{path}[{i}]") for i, child in enumerate(value))


async def read_json_object(request: web.Request, max_bytes: int) -> dict[str, Any]:
    """Content type, size limit and JSON-object checks in the contract's order."""
    check_json_content_type(request)
    return parse_json_object(await read_body_bytes(request, max_bytes))


def reject_unknown(obj: dict[str, Any], allowed: Iterable[str], where: str = "") -> None:
    """400 naming the first field of ``obj`` not in ``allowed``."""
    allowed_set = set(allowed)
    for key in obj:
        if key not in allowed_set:
            raise InvalidRequest(f"unknown field {key!r}", param=f"{where}{key}")
