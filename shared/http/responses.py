"""JSON answers of every service's handlers: the body rendered by orjson (compact, UTF-8),
``Content-Type: application/json``. Error answers go through :mod:`shared.http.errors`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from aiohttp import web


def json_response(body: Any, status: int = 200,
                  headers: Mapping[str, str] | None = None) -> web.Response:
    """``body`` (anything orjson renders) as a JSON answer with ``status`` and ``headers``."""
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json",
                        headers=headers)
