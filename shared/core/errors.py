"""Errors a caller can act on.

Hierarchy::

    PostwireError
    ├── ApiError                  answered to an HTTP client in the contract's error format
    │   ├── InvalidRequest        400 invalid_request
    │   ├── AuthenticationFailed  401 authentication_failed
    │   ├── Forbidden             403 forbidden
    │   ├── NotFound              404 not_found
    │   ├── Conflict              409 conflict
    │   ├── IdempotencyConflict   409 idempotency_conflict
    │   ├── PayloadTooLarge       413 payload_too_large
    │   ├── UnsupportedMediaType  415 unsupported_media_type
    │   ├── RateLimited           429 rate_limited
    │   └── Unavailable           503 unavailable
    └── ConfigError               a bad setting: the service stops at start with one line

Library exceptions are translated at the adapters (``raise ... from exc``); nothing else escapes
to a client, which never sees a stack trace.
"""

from __future__ import annotations

from typing import Any, ClassVar


class PostwireError(Exception):
    """Base of every error Postwire raises on purpose."""


class ConfigError(PostwireError):
    """A missing or bad configuration value; the message names the variable."""


class ApiError(PostwireError):
    """An error answered as ``{"error": {"type", "message", "param"}}`` with ``status``."""

    status: ClassVar[int] = 500
    error_type: ClassVar[str] = "internal_error"

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param

    def body(self) -> dict[str, Any]:
        """The JSON error body of the contract."""
        return {"error": {"type": self.error_type, "message": self.message, "param": self.param}}


class InvalidRequest(ApiError):
    status, error_type = 400, "invalid_request"


class AuthenticationFailed(ApiError):
    status, error_type = 401, "authentication_failed"


class Forbidden(ApiError):
    status, error_type = 403, "forbidden"


class NotFound(ApiError):
    status, error_type = 404, "not_found"


class Conflict(ApiError):
    status, error_type = 409, "conflict"


class IdempotencyConflict(ApiError):
    status, error_type = 409, "idempotency_conflict"


class PayloadTooLarge(ApiError):
    status, error_type = 413, "payload_too_large"


class UnsupportedMediaType(ApiError):
    status, error_type = 415, "unsupported_media_type"


class RateLimited(ApiError):
    status, error_type = 429, "rate_limited"


class Unavailable(ApiError):
    status, error_type = 503, "unavailable"
