"""Reading event bodies exactly: request bytes to members, and ``data``'s source bytes. Pure.

:func:`read_event` and :func:`read_batch` do the reading half of
:mod:`services.ingest.event_validation` (which checks the rules): they never round a number
and never re-render ``data``. Two paths:

- fast: a body that is byte for byte what orjson (compact producers, JavaScript's
  ``JSON.stringify``) or Python's ``json.dumps`` with default settings make of its value is
  parsed once by orjson; then every number's spelling is the shortest one of the value read
  and no object repeats a name, so each value's source is its rendering;
- general: any other body is walked by :class:`shared.core.json_text.JsonCursor` (exact
  numbers, spans, and the problems that make a value unusable as sent).

A body that is not a UTF-8 JSON object raises InvalidRequest (400 for the whole request).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from shared.core.errors import InvalidRequest
from shared.core.json_text import JsonCursor, JsonSyntaxError


@dataclass(frozen=True, slots=True)
class Problem:
    """A member whose value is valid JSON but must not be used as it is (see
    :mod:`shared.core.json_text`): what is wrong with it."""

    text: str


Fields = dict[str, Any]  # member name -> parsed value, or Problem


@dataclass(frozen=True, slots=True)
class EventRead:
    """One event object as read from the body: its members and ``data``'s source bytes."""

    fields: Fields
    data_source: bytes | None


def printable(name: str) -> str:
    """``name`` as it can be shown in an error (a lone surrogate is escaped)."""
    return name.encode("utf-8", "backslashreplace").decode("utf-8")


def _not_json(exc: JsonSyntaxError) -> InvalidRequest:
    return InvalidRequest(f"request body is not valid JSON: {exc}")


Render = Callable[[Any], bytes]


def _python_json(value: Any) -> bytes:
    return json.dumps(value).encode()


_RENDERERS: tuple[Render, ...] = (orjson.dumps, _python_json)


def _as_rendered(raw: bytes) -> tuple[Any, Render] | None:
    """The body's value, and the renderer that writes it back byte for byte, when the body is
    exactly what orjson (compact producers, JavaScript's ``JSON.stringify``) or Python's
    ``json.dumps`` with default settings make of that value; else None. Then every number in
    it was read exactly (its spelling is the shortest one of the value read) and no object
    names a member twice, so each value's source is its rendering. The fast path; every other
    body is read by :class:`JsonCursor`."""
    try:
        value = orjson.loads(raw)
        trimmed = raw.strip(b" \t\r\n")  # whitespace around the document is outside values
        for render in _RENDERERS:
            if render(value) == trimmed:
                return value, render
    except (orjson.JSONDecodeError, orjson.JSONEncodeError, RecursionError):
        pass
    return None


def _from_rendered(obj: dict[str, Any], render: Render) -> EventRead:
    data = obj.get("data")
    return EventRead(obj, render(data) if isinstance(data, dict) else None)


def _document(raw: bytes) -> JsonCursor:
    """A cursor on the request body, which must be a UTF-8 JSON object (400 otherwise)."""
    if not raw.strip():
        raise InvalidRequest("request body is empty; a JSON object is required")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidRequest(f"request body is not valid UTF-8 (byte {exc.start})") from None
    cursor = JsonCursor(text)
    if cursor.peek() != "{":
        try:
            cursor.value()
            cursor.finish()
        except JsonSyntaxError as exc:
            raise _not_json(exc) from None
        raise InvalidRequest("request body must be a JSON object")
    return cursor


def _read_object(cursor: JsonCursor) -> EventRead:
    """The event object at the cursor (consumed). A member given twice: the last one wins,
    as in every common JSON parser."""
    fields: Fields = {}
    data_source = None
    for name in cursor.members():
        scanned = cursor.value()
        fields[name] = scanned.value if scanned.problem is None else Problem(scanned.problem)
        if name == "data":
            data_source = cursor.text[scanned.start:scanned.end].encode("utf-8")
    return EventRead(fields, data_source)


def read_event(raw: bytes) -> EventRead:
    """A ``POST /v1/events`` body, read; InvalidRequest when it is not a JSON object."""
    rendered = _as_rendered(raw)
    if rendered is not None and isinstance(rendered[0], dict):
        return _from_rendered(*rendered)
    cursor = _document(raw)
    try:
        read = _read_object(cursor)
        cursor.finish()
    except JsonSyntaxError as exc:
        raise _not_json(exc) from None
    return read


def read_batch(raw: bytes, max_items: int) -> Fields:
    """The batch body's members, ``events`` (when an array) as a list of :class:`EventRead`
    (or whatever else each item is); InvalidRequest when the body is not a JSON object.
    Reading ``events`` stops after ``max_items + 1`` items (the caller refuses that many)."""
    rendered = _as_rendered(raw)
    if rendered is not None and isinstance(rendered[0], dict):
        body: Fields = rendered[0]
        events = body.get("events")
        if isinstance(events, list):
            body["events"] = [_from_rendered(item, rendered[1]) if isinstance(item, dict)
                              else item for item in events[:max_items + 1]]
        return body
    cursor = _document(raw)
    members: Fields = {}
    try:
        for name in cursor.members():
            if name != "events" or cursor.peek() != "[":
                scanned = cursor.value()
                members[name] = scanned.value if scanned.problem is None else None
                continue
            items: list[Any] = []
            members[name] = items
            for index in cursor.elements():
                if index == max_items:
                    items.append(None)
                    return members
                items.append(_read_object(cursor) if cursor.peek() == "{"
                             else cursor.value().value)
        cursor.finish()
    except JsonSyntaxError as exc:
        raise _not_json(exc) from None
    return members
