"""``python -m services.dispatcher``: delivers webhooks; serves health and metrics.

Logs at ``POSTWIRE_LOG_LEVEL`` (default INFO); exits with status 2 on an invalid setting."""

from __future__ import annotations

import os

from services.dispatcher.app import make_app
from services.dispatcher.settings import load_dispatcher_settings
from shared.service_main import log_level_from, serve_from_environment


def main() -> None:
    serve_from_environment("dispatcher", load_dispatcher_settings, make_app,
                           log_level=log_level_from(os.environ))


if __name__ == "__main__":
    main()
