"""``python -m services.dispatcher``: delivers webhooks; serves health and metrics."""

from __future__ import annotations

import os
import sys

from aiohttp import web

from services.dispatcher.app import make_app
from services.dispatcher.settings import load_dispatcher_settings
from shared.config_http import load_http_settings
from shared.core.errors import ConfigError
from shared.http.server import run_service
from shared.logging import configure_logging

_LEVELS = frozenset({"DEBUG", "INFO", "WARNING", "ERROR"})


def main() -> None:
    level = os.environ.get("POSTWIRE_LOG_LEVEL", "INFO").upper()
    configure_logging("dispatcher", level if level in _LEVELS else "INFO")
    try:
        settings = load_dispatcher_settings(os.environ)
        http = load_http_settings(os.environ, settings.common.host)
    except ConfigError as exc:
        print(f"postwire dispatcher: {exc}", file=sys.stderr)
        sys.exit(2)

    async def factory() -> web.Application:
        return await make_app(settings)

    run_service("dispatcher", factory, settings.common.host, settings.port, http)


if __name__ == "__main__":
    main()
