"""The body of every ``python -m services.<name>``: read the settings or exit, then serve.

:func:`serve_from_environment` configures JSON logging for the service, loads its settings and
the HTTP listener's settings from the process environment, and on a ConfigError prints one line
``postwire <name>: <message>`` to stderr and exits with status 2 (nothing started). Otherwise it
hands the app factory to :func:`shared.http.server.run_service`, which serves until SIGTERM.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Awaitable, Callable, Mapping
from typing import Protocol, TypeVar

from aiohttp import web

from shared.config import CommonSettings
from shared.config_http import load_http_settings
from shared.core.errors import ConfigError
from shared.http.server import run_service
from shared.logging import configure_logging

LOG_LEVELS = frozenset({"DEBUG", "INFO", "WARNING", "ERROR"})


class ServiceSettings(Protocol):
    """What the entry point needs of a service's settings: the common block and its port."""

    @property
    def common(self) -> CommonSettings: ...

    @property
    def port(self) -> int: ...


S = TypeVar("S", bound=ServiceSettings)


def log_level_from(env: Mapping[str, str]) -> str:
    """``POSTWIRE_LOG_LEVEL`` upper-cased when it names a level, else ``INFO``."""
    level = env.get("POSTWIRE_LOG_LEVEL", "INFO").upper()
    return level if level in LOG_LEVELS else "INFO"


def serve_from_environment(name: str, load_settings: Callable[[Mapping[str, str]], S],
                           make_app: Callable[[S], Awaitable[web.Application]], *,
                           log_level: str = "INFO") -> None:
    """Run service ``name`` from ``os.environ`` (see the module docstring); returns when the
    service stopped. Exits with status 2 when a setting is invalid."""
    configure_logging(name, log_level)
    try:
        settings = load_settings(os.environ)
        http = load_http_settings(os.environ, settings.common.host)
    except ConfigError as exc:
        print(f"postwire {name}: {exc}", file=sys.stderr)
        sys.exit(2)

    async def factory() -> web.Application:
        return await make_app(settings)

    run_service(name, factory, settings.common.host, settings.port, http)
