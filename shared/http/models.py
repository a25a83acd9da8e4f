"""Request bodies checked by msgspec models: the same classes generate the OpenAPI document.

A request model is a ``msgspec.Struct`` declared with ``forbid_unknown_fields=True`` whose
fields carry their limits as ``msgspec.Meta`` constraints (lengths, ranges, patterns). It is
both the check and the documentation: :func:`convert_body` validates a parsed JSON object
with it, and :mod:`shared.http.openapi` turns the same class into JSON Schema. Rules that
JSON Schema cannot state (a URL's host, a secret's decoded length, duplicates in a list) are
checked after the model by the caller, on the typed result.

Errors are translated into the contract's :class:`InvalidRequest` naming the field's path:
``url``, ``event_types[2]``, ``metadata.team``, ``filter.since``. A model may give friendlier
messages per top-level field in its ``RULES`` class variable (field name -> sentence).
"""

from __future__ import annotations

import re
from types import UnionType
from typing import Annotated, Any, ClassVar, TypeVar, Union, get_args, get_origin

import msgspec

from shared.core.errors import InvalidRequest

ModelT = TypeVar("ModelT", bound=msgspec.Struct)

_AT_RE = re.compile(r"^(?P<what>.*) - at (?:`key` in )?`\$(?P<path>.*)`$", re.DOTALL)
_MISSING_RE = re.compile(r"^Object missing required field `(?P<name>.*)`$", re.DOTALL)
_UNKNOWN_RE = re.compile(r"^Object contains unknown field `(?P<name>.*)`$", re.DOTALL)
_PART_RE = re.compile(r"\.([^.\[]+)|\[(\d+|\.\.\.)\]")


class RequestModel(msgspec.Struct, forbid_unknown_fields=True):
    """Base of request bodies: unknown fields are refused; ``RULES`` words the errors; an
    error inside a list or map field named in ``WHOLE`` names the field, not the element."""

    RULES: ClassVar[dict[str, str]] = {}
    WHOLE: ClassVar[frozenset[str]] = frozenset()


def _walk(value: Any, path: str, model: type[msgspec.Struct]) -> list[str]:
    """The printable parts of msgspec's ``path`` through ``value``.

    A map element (``[...]`` in msgspec's path) is resolved to the first key whose value does
    not have the declared form (:func:`_bad_key`); a bad key itself leaves the map's name.
    """
    parts: list[str] = []
    for match in _PART_RE.finditer(path):
        name, index = match.group(1), match.group(2)
        if name is not None:
            parts.append(name)
            value = value.get(name) if isinstance(value, dict) else None
        elif index == "...":
            key = _bad_key(value, _map_value_type(model, parts))
            if key is None:
                return parts
            parts.append(key)
            value = value[key]
        else:
            parts.append(f"[{index}]")
            value = value[int(index)] if isinstance(value, list) and int(index) < len(value) \
                else None
    return parts


def _strip(tp: Any) -> Any:
    """``tp`` without ``Annotated`` and without a ``None`` arm."""
    while True:
        if get_origin(tp) is Annotated:
            tp = get_args(tp)[0]
        elif get_origin(tp) in (Union, UnionType):
            arms = [arm for arm in get_args(tp) if arm is not type(None)]
            if len(arms) != 1:
                return tp
            tp = arms[0]
        else:
            return tp


def _map_value_type(model: type[msgspec.Struct], parts: list[str]) -> Any:
    """The declared value type of the top-level map field ``parts[0]``, or None."""
    if len(parts) != 1:
        return None
    for field in msgspec.structs.fields(model):
        if field.name == parts[0]:
            tp = _strip(field.type)
            return get_args(tp)[1] if get_origin(tp) is dict else None
    return None


def _bad_key(value: Any, value_type: Any) -> str | None:
    """The first key of map ``value`` whose item is not a ``value_type``."""
    if not isinstance(value, dict) or value_type is None:
        return None
    for key, item in value.items():
        try:
            msgspec.convert(item, value_type, strict=True)
        except msgspec.ValidationError:
            return str(key)
    return None


def _join(prefix: str, parts: list[str], field: str | None = None) -> str:
    """``prefix`` and the located ``parts`` (``[i]`` index parts attach without a dot), then
    ``field``, a member name that is always dotted even when it looks like an index."""
    text = prefix
    for part in parts:
        if part.startswith("["):
            text += part
        else:
            text = f"{text}.{part}" if text else part
    if field is not None:
        text = f"{text}.{field}" if text else field
    return text


def translate(error: msgspec.ValidationError, body: dict[str, Any],
              model: type[msgspec.Struct], prefix: str = "") -> InvalidRequest:
    """The contract error for msgspec's ``error`` raised while converting ``body``."""
    text = str(error)
    where = ""
    located = _AT_RE.match(text)
    if located is not None:
        text, where = located.group("what"), located.group("path")
    parts = _walk(body, where, model)
    missing, unknown = _MISSING_RE.match(text), _UNKNOWN_RE.match(text)
    if missing is not None:
        required = _join(prefix, parts, missing.group("name"))
        return InvalidRequest(f"{required} is required", param=required)
    if unknown is not None:
        name = unknown.group("name")
        return InvalidRequest(f"unknown field {name!r}", param=_join(prefix, parts, name))
    whole: frozenset[str] = getattr(model, "WHOLE", frozenset())
    if parts and parts[0] in whole:
        parts = parts[:1]
    param: str | None = _join(prefix, parts) or None
    rules: dict[str, str] = getattr(model, "RULES", {})
    rule = rules.get(parts[0]) if len(parts) == 1 else None
    if rule is not None:
        return InvalidRequest(rule, param=param)
    return InvalidRequest(f"{param}: {text}" if param else text, param=param)


def convert_body(body: dict[str, Any], model: type[ModelT], prefix: str = "") -> ModelT:
    """``body`` (a parsed JSON object) as an instance of ``model``; InvalidRequest otherwise.

    Conversion is strict: no string-to-number or number-to-bool coercion, ``1.0`` is not an
    integer. ``prefix`` is put before every ``param`` (``filter.`` for a nested object)."""
    try:
        return msgspec.convert(body, model, strict=True)
    except msgspec.ValidationError as exc:
        raise translate(exc, body, model, prefix) from exc
