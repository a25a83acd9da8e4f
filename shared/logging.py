"""Structured JSON logs, one object per line on stderr.

Log with ``log.info("delivery succeeded", extra=fields(event_id=..., delivery_id=...,
endpoint_id=...))``: the ids become top-level keys, so operators can grep or ship them.

Credentials never reach the log, even inside a third-party message or a traceback: every line
is passed through :func:`redact`, which masks ``Bearer <token>`` and ``whsec_`` secrets.
"""

from __future__ import annotations

import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any

import orjson

_CONTEXT_KEYS = ("event_id", "delivery_id", "endpoint_id", "account_id", "replay_id", "operator")
_SECRETS = re.compile(r"(?i)(bearer(?:\s|\\[trn])+)[^\s\\\"',;]+|whsec_[A-Za-z0-9+/=_-]+")


def redact(text: str) -> str:
    """``text`` with bearer tokens (``Bearer abc`` -> ``Bearer [redacted]``) and endpoint
    secrets (``whsec_...`` -> ``whsec_[redacted]``) masked."""
    return _SECRETS.sub(
        lambda m: f"{m.group(1)}[redacted]" if m.group(1) else "whsec_[redacted]", text)


_RESERVED = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}


def fields(**values: Any) -> dict[str, Any]:
    """Wrap context fields for ``extra=``; None values are dropped."""
    return {"pw": {k: v for k, v in values.items() if v is not None}}


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON object with ts, level, service, logger, msg and context."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        extra = getattr(record, "pw", None)
        if isinstance(extra, dict):
            out.update(extra)
        for key, value in record.__dict__.items():
            if key not in _RESERVED and key != "pw" and key in _CONTEXT_KEYS:
                out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return redact(orjson.dumps(out, default=str).decode())


def configure_logging(service: str, level: str = "INFO") -> None:
    """Send every logger's records to stderr as JSON lines tagged with ``service``."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("aiokafka", "kafka", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
