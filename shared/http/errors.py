"""Every HTTP error leaves in the contract's format: ``{"error": {"type", "message", "param"}}``.

Handlers raise :class:`shared.core.errors.ApiError` subclasses (one carrying ``retry_after_s``
also gets a ``Retry-After`` header). aiohttp's own 404/405 and body errors are translated, a
body that missed its deadline or broke its framing is a 400; anything unexpected is logged with
its stack and answered 503 ``unavailable`` without details (a client never sees a stack trace).
Errors raised below the app (the HTTP parser) are :mod:`shared.http.protocol`'s business.
"""

from __future__ import annotations

import logging

import asyncpg
import orjson
from aiohttp import web
from aiohttp.web_protocol import RequestPayloadError

from shared.core.errors import ApiError, InvalidRequest, NotFound, PayloadTooLarge, Unavailable
from shared.http.limits import BodyDeadlineExceeded
from shared.http.types import Handler

log = logging.getLogger(__name__)


def error_response(error: ApiError, headers: dict[str, str] | None = None) -> web.Response:
    """The JSON response for ``error``."""
    return web.Response(status=error.status, body=orjson.dumps(error.body()),
                        content_type="application/json", headers=headers)


def _from_http_exception(exc: web.HTTPException) -> ApiError:
    if exc.status == 404:
        return NotFound("no such route")
    if exc.status == 405:
        error = InvalidRequest("method not allowed on this route")
        error.status = 405  # type: ignore[misc]
        return error
    if exc.status == 413:
        return PayloadTooLarge("request body is too large")
    return InvalidRequest(exc.reason or "bad request")


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Translate every exception into a contract error response."""
    try:
        return await handler(request)
    except ApiError as exc:
        retry_after = getattr(exc, "retry_after_s", None)
        return error_response(exc, None if retry_after is None
                              else {"Retry-After": str(retry_after)})
    except BodyDeadlineExceeded as exc:
        return error_response(InvalidRequest(str(exc)))
    except RequestPayloadError:
        return error_response(InvalidRequest("the request body is malformed"))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return error_response(_from_http_exception(exc))
    except (OSError, asyncpg.InterfaceError, asyncpg.PostgresConnectionError,
            asyncpg.CannotConnectNowError, TimeoutError) as exc:
        log.warning("dependency unavailable on %s %s: %r", request.method, request.path, exc)
        return error_response(Unavailable("a dependency is unavailable; retry later"))
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(Unavailable("internal error; retry later"))
