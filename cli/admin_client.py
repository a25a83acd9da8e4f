"""A small synchronous client of the admin API for the operator CLI (stdlib ``urllib`` only).

Errors are translated into :class:`CliError` carrying the exit status the CLI returns and a
message meant for a human::

    CliError
    ├── exit 1  the request was refused (400, 409, other 4xx) or answered nonsense
    ├── exit 2  usage or configuration (no token)
    ├── exit 3  not found (404)
    ├── exit 4  authentication failed (401/403): wrong token, or not an admin token
    └── exit 5  service unreachable, timed out or unavailable (503)
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from typing import Any

EXIT_REFUSED = 1
EXIT_USAGE = 2
EXIT_NOT_FOUND = 3
EXIT_AUTH = 4
EXIT_UNREACHABLE = 5
DEFAULT_URL = "http://127.0.0.1:8082"
_LOOPBACK = ("127.0.0.1", "localhost", "::1")


class CliError(Exception):
    """A failure to report on stderr; ``exit_code`` is the process exit status."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


def _error_detail(raw: bytes) -> tuple[str | None, str]:
    """(type, message) of a contract error body, or (None, a short excerpt)."""
    try:
        error = json.loads(raw)["error"]
        return str(error.get("type")), str(error.get("message"))
    except (ValueError, KeyError, TypeError, AttributeError):
        return None, raw[:200].decode(errors="replace").strip() or "(empty body)"


def http_error(status: int, raw: bytes, url: str) -> CliError:
    """The CliError for an HTTP error answer (status, body) from the service at ``url``."""
    kind, message = _error_detail(raw)
    if status in (401, 403):
        return CliError(f"authentication failed: {message} (is this an admin token? set "
                        "--token or POSTWIRE_ADMIN_TOKEN)", EXIT_AUTH)
    if status == 404:
        return CliError(f"not found: {message}", EXIT_NOT_FOUND)
    if status == 503:
        return CliError(f"admin service unavailable at {url}: {message}", EXIT_UNREACHABLE)
    return CliError(f"request refused ({status} {kind or 'error'}): {message}", EXIT_REFUSED)


class AdminClient:
    """Talks to one admin service. Every call blocks for at most ``timeout_s``."""

    def __init__(self, base_url: str, token: str, timeout_s: float = 15.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._token = token
        self._timeout_s = timeout_s
        host = urllib.parse.urlsplit(self.base_url).hostname or ""
        # never send loopback traffic through an HTTP proxy from the environment
        handlers = [urllib.request.ProxyHandler({})] if host in _LOOPBACK else []
        self._opener = urllib.request.build_opener(*handlers)

    def call(self, method: str, path: str, *, body: Mapping[str, Any] | None = None,
             query: Mapping[str, Any] | None = None,
             headers: Mapping[str, str] | None = None) -> Any:
        """Send one request and return the decoded JSON answer; raises CliError otherwise."""
        params = {k: v for k, v in (query or {}).items() if v is not None}
        url = self.base_url + path + (f"?{urllib.parse.urlencode(params)}" if params else "")
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(url, data=data, method=method, headers={
            "Authorization": f"Bearer {self._token}", "Accept": "application/json",
            **({"Content-Type": "application/json"} if data is not None else {}),
            **(headers or {})})
        try:
            with self._opener.open(request, timeout=self._timeout_s) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            raise http_error(exc.code, exc.read(), self.base_url) from exc
        except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
            reason = getattr(exc, "reason", exc)
            raise CliError(f"cannot reach the admin service at {self.base_url} ({reason}); "
                           "is it running? (--url or POSTWIRE_ADMIN_URL)", EXIT_UNREACHABLE
                           ) from exc
        try:
            return json.loads(raw) if raw else None
        except ValueError as exc:
            raise CliError(f"the service at {self.base_url} did not answer JSON",
                           EXIT_REFUSED) from exc

    def get(self, path: str, **query: Any) -> Any:
        return self.call("GET", path, query=query)

    def post(self, path: str, body: Mapping[str, Any] | None = None,
             headers: Mapping[str, str] | None = None) -> Any:
        return self.call("POST", path, body=body if body is not None else {}, headers=headers)

    def walk(self, path: str, limit: int, **query: Any) -> list[dict[str, Any]]:
        """Up to ``limit`` items of a list, following cursors page by page."""
        items: list[dict[str, Any]] = []
        cursor = None
        while len(items) < limit:
            page = self.get(path, limit=min(100, limit - len(items)), cursor=cursor, **query)
            items.extend(page["data"])
            cursor = page.get("next_cursor")
            if not page.get("has_more") or not cursor:
                break
        return items
