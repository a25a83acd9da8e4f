"""Validation of the Endpoints API's request bodies (docs/api.md, "Endpoints").

Every function raises :class:`InvalidRequest` whose ``param`` names the offending field (for an
element of a list or map: ``event_types[2]``, ``metadata.team``). Nothing here touches the network
or the database except :func:`check_url_target`, which resolves the URL's host through the
resolver it is given.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec

from shared.adapters.dns import ResolutionFailed, Resolver
from shared.core.errors import InvalidRequest
from shared.core.matching import WILDCARD_ALL, validate_event_type_pattern
from shared.core.signing import parse_secret
from shared.core.ssrf import (
    DEFAULT_DENIED_TARGET_PORTS,
    canonical_endpoint_url,
    check_url_host,
    connect_target,
    parse_host_literal,
    parse_port_set,
    validate_endpoint_url,
)
from shared.http.models import convert_body
from shared.models.endpoints import DEFAULT_GRACE_PERIOD_S as DEFAULT_GRACE_PERIOD_S
from shared.models.endpoints import (
    DEFAULT_MAX_IN_FLIGHT,
    MAX_DESCRIPTION_LENGTH,
    MAX_EVENT_TYPES,
    MAX_MAX_IN_FLIGHT,
    MAX_METADATA_KEY_LENGTH,
    MAX_METADATA_KEYS,
    MAX_METADATA_VALUE_LENGTH,
    MAX_RATE_LIMIT_PER_S,
    MIN_MAX_IN_FLIGHT,
    EndpointCreate,
    EndpointPatch,
    RotateSecret,
)
from shared.models.endpoints import MAX_GRACE_PERIOD_S as MAX_GRACE_PERIOD_S

ACCOUNT_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")

MUTABLE_FIELDS = ("url", "event_types", "description", "enabled", "rate_limit_per_s",
                  "max_in_flight", "metadata")
CREATE_FIELDS = ("account_id", "secret", *MUTABLE_FIELDS)
IMMUTABLE_FIELDS = ("account_id", "secret")


@dataclass(frozen=True)
class EndpointSpec:
    """A validated create request; ``secret`` None means "generate one"."""

    account_id: str
    url: str
    event_types: tuple[str, ...] = (WILDCARD_ALL,)
    description: str | None = None
    enabled: bool = True
    rate_limit_per_s: int | None = None
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT
    metadata: dict[str, str] = field(default_factory=dict)
    secret: str | None = None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def validate_account_id(value: Any, param: str = "account_id") -> str:
    """1..64 characters of ``[A-Za-z0-9_-]``."""
    if not isinstance(value, str) or not ACCOUNT_ID_RE.fullmatch(value):
        raise InvalidRequest(f"{param} must be 1..64 characters of letters, digits, '_' or '-'",
                             param=param)
    return value


def validate_url(value: Any) -> str:
    """An absolute http(s) URL of at most 2048 characters (syntax only; see check_url_target),
    returned in canonical form (:func:`canonical_endpoint_url`): its host is the one the
    dispatcher's HTTP client will connect to, so the SSRF guard judges what is really used."""
    if not isinstance(value, str):
        raise InvalidRequest("url must be a string", param="url")
    error = validate_endpoint_url(value)
    canonical = value
    if error is None:
        try:
            canonical = canonical_endpoint_url(value)
        except ValueError:
            error = "url is not a valid URL (check the host)"
    if error is None:
        error = validate_endpoint_url(canonical)
    if error is not None:
        raise InvalidRequest(error, param="url")
    return canonical


def validate_event_types(value: Any) -> tuple[str, ...]:
    """A non-empty list of at most 100 distinct patterns (``invoice.paid``, ``a.*``, ``*``)."""
    if not isinstance(value, list) or not value:
        raise InvalidRequest("event_types must be a non-empty list of event type patterns",
                             param="event_types")
    if len(value) > MAX_EVENT_TYPES:
        raise InvalidRequest(f"event_types may hold at most {MAX_EVENT_TYPES} patterns",
                             param="event_types")
    seen: set[str] = set()
    for index, pattern in enumerate(value):
        error = validate_event_type_pattern(pattern)
        if error is not None:
            raise InvalidRequest(error, param=f"event_types[{index}]")
        if pattern in seen:
            raise InvalidRequest(f"event type pattern {pattern!r} is listed twice",
                                 param=f"event_types[{index}]")
        seen.add(pattern)
    return tuple(value)


def validate_description(value: Any) -> str | None:
    """A string of at most 1024 characters, or null."""
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > MAX_DESCRIPTION_LENGTH:
        raise InvalidRequest(f"description must be a string of at most {MAX_DESCRIPTION_LENGTH} "
                             "characters, or null", param="description")
    return value


def validate_enabled(value: Any) -> bool:
    """``true`` or ``false`` (not 0/1, not a string)."""
    if not isinstance(value, bool):
        raise InvalidRequest("enabled must be true or false", param="enabled")
    return value


def validate_rate_limit(value: Any) -> int | None:
    """A positive integer (requests per second, at most 100000), or null for no limit."""
    if value is None:
        return None
    if not _is_int(value) or not 1 <= value <= MAX_RATE_LIMIT_PER_S:
        raise InvalidRequest(f"rate_limit_per_s must be an integer from 1 to "
                             f"{MAX_RATE_LIMIT_PER_S}, or null", param="rate_limit_per_s")
    result: int = value
    return result


def validate_max_in_flight(value: Any) -> int:
    """An integer in 1..1000."""
    if not _is_int(value) or not MIN_MAX_IN_FLIGHT <= value <= MAX_MAX_IN_FLIGHT:
        raise InvalidRequest(f"max_in_flight must be an integer from {MIN_MAX_IN_FLIGHT} to "
                             f"{MAX_MAX_IN_FLIGHT}", param="max_in_flight")
    result: int = value
    return result


def validate_metadata(value: Any) -> dict[str, str]:
    """A string-to-string map: at most 50 keys of 1..64 characters, values of at most 512.

    null is taken as the empty map. NUL (``\\u0000``) is refused in keys and values: the map is
    stored as ``jsonb``, which cannot hold it (it answered 503 before).
    """
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidRequest("metadata must be an object mapping strings to strings",
                             param="metadata")
    if len(value) > MAX_METADATA_KEYS:
        raise InvalidRequest(f"metadata may hold at most {MAX_METADATA_KEYS} keys",
                             param="metadata")
    for key, item in value.items():
        if not 1 <= len(key) <= MAX_METADATA_KEY_LENGTH or "\x00" in key:
            raise InvalidRequest(f"metadata keys must be 1..{MAX_METADATA_KEY_LENGTH} characters"
                                 " without NUL", param="metadata")
        if not isinstance(item, str) or len(item) > MAX_METADATA_VALUE_LENGTH or "\x00" in item:
            raise InvalidRequest(f"metadata values must be strings of at most "
                                 f"{MAX_METADATA_VALUE_LENGTH} characters without NUL",
                                 param=f"metadata.{key}")
    return dict(value)


def validate_secret(value: Any) -> str:
    """``whsec_`` + base64 of 24..64 bytes."""
    if not isinstance(value, str):
        raise InvalidRequest("secret must be a string", param="secret")
    try:
        parse_secret(value)
    except ValueError as exc:
        raise InvalidRequest(str(exc), param="secret") from exc
    return value


_FIELD_VALIDATORS: dict[str, Callable[[Any], Any]] = {
    "url": validate_url,
    "event_types": validate_event_types,
    "description": validate_description,
    "enabled": validate_enabled,
    "rate_limit_per_s": validate_rate_limit,
    "max_in_flight": validate_max_in_flight,
    "metadata": validate_metadata,
}


def _given(model: EndpointCreate | EndpointPatch, names: tuple[str, ...]) -> dict[str, Any]:
    """The fields of ``model`` among ``names`` that the body set, through their validators."""
    values: dict[str, Any] = {}
    for name in names:
        value = getattr(model, name)
        if value is not msgspec.UNSET:
            values[name] = _FIELD_VALIDATORS[name](value)
    return values


def validate_create(body: dict[str, Any]) -> EndpointSpec:
    """The create request ``body`` as an :class:`EndpointSpec`, defaults filled in.

    The body is checked by :class:`EndpointCreate` (fields, types, limits), then by the
    field validators above (URL host and canonical form, patterns listed twice, the secret's
    decoded length)."""
    model = convert_body(body, EndpointCreate)
    values = _given(model, MUTABLE_FIELDS)
    account_id = validate_account_id(model.account_id)
    secret = None if model.secret is msgspec.UNSET else validate_secret(model.secret)
    return EndpointSpec(account_id=account_id, secret=secret, **values)


def validate_patch(body: dict[str, Any]) -> dict[str, Any]:
    """The fields a PATCH ``body`` changes, validated; column name -> new value.

    ``account_id`` and ``secret`` cannot be changed (400 naming them; rotate the secret with
    ``rotate-secret``). An empty body changes nothing. Checked by :class:`EndpointPatch`,
    then by the field validators.
    """
    for name in IMMUTABLE_FIELDS:
        if name in body:
            hint = "; use POST /v1/endpoints/{id}/rotate-secret" if name == "secret" else ""
            raise InvalidRequest(f"{name} cannot be changed{hint}", param=name)
    changes = _given(convert_body(body, EndpointPatch), MUTABLE_FIELDS)
    if "event_types" in changes:
        changes["event_types"] = list(changes["event_types"])
    return changes


def validate_rotate(body: dict[str, Any]) -> int:
    """``grace_period_s`` of a rotate-secret body: an integer in 0..604800, default 86400
    (:class:`RotateSecret`)."""
    return convert_body(body, RotateSecret).grace_period_s


def _needs_resolution(host: str) -> bool:
    """False for IP literals and ``localhost`` names, which check_url_host judges by itself."""
    name = host.rstrip(".").lower()
    is_localhost = name == "localhost" or name.endswith(".localhost")
    return not is_localhost and parse_host_literal(host) is None


DEFAULT_DENIED_PORTS = parse_port_set(DEFAULT_DENIED_TARGET_PORTS)


async def check_url_target(url: str, *, allow_private: bool, resolve: Resolver,
                           denied_ports: frozenset[int] = DEFAULT_DENIED_PORTS) -> None:
    """Refuse (400, param ``url``) a URL on a port in ``denied_ports``, or whose host is, or
    resolves to, a non-public address.

    The host is judged in the form a connection uses (:func:`connect_target`), whatever form
    ``url`` spells it in. Only the port is checked when ``allow_private`` is set. A host name
    is resolved with ``resolve``; every address it yields must be public. A name that does not
    resolve, or whose resolution times out, is a 400 too (the message says when retrying may
    help). ``url`` must already have passed :func:`validate_url`.
    """
    try:
        host, port = connect_target(url)
    except ValueError as exc:
        raise InvalidRequest("url is not a valid URL (check the host)", param="url") from exc
    if port in denied_ports:
        raise InvalidRequest(f"url refused: port {port} is not allowed for webhooks (see "
                             "POSTWIRE_DENIED_TARGET_PORTS)", param="url")
    if allow_private:
        return
    url = canonical_endpoint_url(url)
    resolved: list[str] = []
    if _needs_resolution(host):
        try:
            resolved = await resolve(host, port)
        except ResolutionFailed as exc:
            hint = " (this may be temporary; retry later)" if exc.temporary else ""
            raise InvalidRequest(f"url refused: {exc}{hint}", param="url") from exc
    reason = check_url_host(url, resolved)
    if reason is not None:
        raise InvalidRequest(f"url refused: {reason}; webhooks may only target public "
                             "addresses (see POSTWIRE_ALLOW_PRIVATE_TARGETS)", param="url")
