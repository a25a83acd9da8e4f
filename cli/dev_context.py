"""What a running ``postwire dev up`` left for other commands: credentials and service URLs.

``dev up`` keeps ``credentials.json`` (API key, admin token) and writes ``urls.json`` (the
base URL of each service it started) under ``.postwire/dev/``. The operator commands and
``postwire dev env`` look for that directory from the current directory upwards, so a second
terminal anywhere inside the checkout needs no configuration. Explicit options and
``POSTWIRE_*`` variables always win over what is found here.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

DEV_SUBDIR = Path(".postwire") / "dev"
CREDENTIALS_FILE = "credentials.json"
URLS_FILE = "urls.json"


@dataclass(frozen=True)
class DevContext:
    """Credentials and URLs of the nearest dev stack; a field is None when not known."""

    directory: Path
    api_key: str | None
    admin_token: str | None
    ingest_url: str | None
    admin_url: str | None


def find_dev_dir(start: Path | None = None) -> Path | None:
    """The nearest ``.postwire/dev`` holding ``credentials.json``, from ``start`` (default: the
    current directory) up to the file system root; None when there is none."""
    here = (start or Path.cwd()).resolve()
    for directory in (here, *here.parents):
        candidate = directory / DEV_SUBDIR
        if (candidate / CREDENTIALS_FILE).is_file():
            return candidate
    return None


def _read_json(path: Path) -> dict[str, object]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _text(data: dict[str, object], key: str) -> str | None:
    value = data.get(key)
    return value if isinstance(value, str) and value else None


def read_dev_context(directory: Path) -> DevContext:
    """What the dev stack under ``directory`` (a ``.postwire/dev``) wrote."""
    creds = _read_json(directory / CREDENTIALS_FILE)
    urls = _read_json(directory / URLS_FILE)
    return DevContext(directory=directory, api_key=_text(creds, "api_key"),
                      admin_token=_text(creds, "admin_token"),
                      ingest_url=_text(urls, "ingest"), admin_url=_text(urls, "dlq_replay"))


def load_dev_context(start: Path | None = None) -> DevContext | None:
    """What the nearest dev stack wrote, or None when there is no dev directory."""
    directory = find_dev_dir(start)
    return None if directory is None else read_dev_context(directory)


def write_urls(directory: Path, urls: dict[str, str]) -> None:
    """Record the running services' base URLs (``{"ingest": "http://...", ...}``)."""
    path = directory / URLS_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(urls, indent=2) + "\n")
    os.replace(tmp, path)


def remove_urls(directory: Path) -> None:
    """Forget the URLs when the stack stops (the credentials stay: they are stable)."""
    (directory / URLS_FILE).unlink(missing_ok=True)
