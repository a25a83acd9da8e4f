"""``python -m services.ingest``: the public ingest API."""

from __future__ import annotations

import os
import sys

from services.ingest.app import make_app
from services.ingest.settings import load_ingest_settings
from shared.config_http import load_http_settings
from shared.core.errors import ConfigError
from shared.http.server import run_service
from shared.logging import configure_logging


def main() -> None:
    configure_logging("ingest")
    try:
        settings = load_ingest_settings(os.environ)
        http = load_http_settings(os.environ, settings.common.host)
    except ConfigError as exc:
        print(f"postwire ingest: {exc}", file=sys.stderr)
        sys.exit(2)

    async def factory():  # type: ignore[no-untyped-def]
        return await make_app(settings)

    run_service("ingest", factory, settings.common.host, settings.port, http)


if __name__ == "__main__":
    main()
