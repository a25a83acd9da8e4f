"""``python -m services.dlq_replay``: the admin and replay API (dead letters, replays, audit)."""

from __future__ import annotations

import os
import sys

from aiohttp import web

from services.dlq_replay.app import make_app
from services.dlq_replay.settings import load_admin_settings
from shared.config_http import load_http_settings
from shared.core.errors import ConfigError
from shared.http.server import run_service
from shared.logging import configure_logging


def main() -> None:
    configure_logging("dlq_replay")
    try:
        settings = load_admin_settings(os.environ)
        http = load_http_settings(os.environ, settings.common.host)
    except ConfigError as exc:
        print(f"postwire dlq_replay: {exc}", file=sys.stderr)
        sys.exit(2)

    async def factory() -> web.Application:
        return await make_app(settings)

    run_service("dlq_replay", factory, settings.common.host, settings.port, http)


if __name__ == "__main__":
    main()
