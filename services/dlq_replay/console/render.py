"""Rendering pages: one Jinja2 environment with autoescaping always on, and the headers every
console and portal response carries.

Every value reaches HTML through Jinja2's autoescape (no template marks anything ``safe``),
so an event whose data holds ``<script>`` or ``<img onerror=...>`` is shown as text. The CSP
forbids inline script and anything from another origin as a second line of defence.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import jinja2
from aiohttp import web

from shared.core.event_body import JsonText

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
SECURITY_HEADERS: Mapping[str, str] = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cache-Control": "no-store",
}

_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("services.dlq_replay.console", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def pretty_json(value: Any) -> str:
    """Indented JSON for display (escaped by the template like any other text); an event's
    ``data`` (JsonText) is shown exactly as the producer sent it."""
    if isinstance(value, JsonText):
        return value.text
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False)


_ENV.filters["pretty_json"] = pretty_json


def render_page(template: str, *, http_status: int = 200, **context: Any) -> web.Response:
    """The rendered template as an HTML response (the guard adds the security headers)."""
    html = _ENV.get_template(template).render(**context)
    return web.Response(status=http_status, text=html, content_type="text/html",
                        charset="utf-8")


def add_security_headers(response: web.StreamResponse) -> None:
    """Set the CSP and the other hardening headers on a console or portal response."""
    for name, value in SECURITY_HEADERS.items():
        response.headers[name] = value
