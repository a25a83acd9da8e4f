"""``python -m services.ingest``: the public ingest API.

Exits with status 2 on an invalid setting."""

from __future__ import annotations

from services.ingest.app import make_app
from services.ingest.settings import load_ingest_settings
from shared.service_main import serve_from_environment


def main() -> None:
    serve_from_environment("ingest", load_ingest_settings, make_app)


if __name__ == "__main__":
    main()
