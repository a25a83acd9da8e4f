"""``python -m services.dlq_replay``: the admin and replay API (dead letters, replays, audit).

Logs and startup errors name the service ``admin`` (the package keeps its historical name).
Exits with status 2 on an invalid setting."""

from __future__ import annotations

from services.dlq_replay.app import make_app
from services.dlq_replay.settings import load_admin_settings
from shared.service_main import serve_from_environment


def main() -> None:
    serve_from_environment("admin", load_admin_settings, make_app)


if __name__ == "__main__":
    main()
