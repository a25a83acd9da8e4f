"""Per-request limits on request bodies: a deadline, and a process-wide byte budget.

- Deadline: the whole body must arrive within ``body_timeout_s`` of the handler starting
  (right after the headers). When it expires, the request's body stream fails with
  :class:`BodyDeadlineExceeded`, which :func:`shared.http.body.read_body_bytes` answers 400;
  a trickling or silent chunked body cannot hold a connection and a task forever.
- Budget: all requests in progress together hold at most ``max_inflight_body_bytes`` of body
  (declared Content-Length up front, or chunk by chunk). A request that would go over is
  refused with 429 ``rate_limited`` and ``Retry-After: 1``, unless it is the only one holding
  body bytes, so one request of the largest size a route allows always gets through. This
  bounds the memory a burst of large batches can take (each body byte costs a few more
  while it is parsed and stored).
"""

from __future__ import annotations

import asyncio

from aiohttp import StreamReader, web
from aiohttp.typedefs import Middleware

from shared.core.errors import RateLimited
from shared.http.types import Handler


class BodyDeadlineExceeded(TimeoutError):
    """The request body did not arrive in time (a TimeoutError, so aiohttp's lingering read
    after the response treats it as the end of the body and closes the connection)."""


class BodyBudgetExceeded(RateLimited):
    """429: request bodies in progress already hold the process's budget."""

    retry_after_s = 1


class BodyBudget:
    """Bytes of request body held by the requests in progress, against a limit."""

    def __init__(self, limit_bytes: int) -> None:
        if limit_bytes < 1:
            raise ValueError("limit_bytes must be >= 1")
        self.limit_bytes = limit_bytes
        self.in_flight = 0
        self.refused = 0


class BodyReservation:
    """One request's share of a :class:`BodyBudget`; :meth:`release` exactly once at its end."""

    def __init__(self, budget: BodyBudget) -> None:
        self._budget = budget
        self.held = 0

    def grow(self, n: int) -> None:
        """Hold ``n`` more bytes; BodyBudgetExceeded if that passes the limit while another
        request holds bytes too."""
        budget = self._budget
        others = budget.in_flight - self.held
        if budget.in_flight + n > budget.limit_bytes and others > 0:
            budget.refused += 1
            raise BodyBudgetExceeded(
                "the service is busy reading other large requests; retry in a second")
        budget.in_flight += n
        self.held += n

    def release(self) -> None:
        """Give every byte back."""
        self._budget.in_flight -= self.held
        self.held = 0


BODY_RESERVATION: web.RequestKey[BodyReservation] = web.RequestKey(
    "postwire_body_reservation", BodyReservation)


class BodyDeadline:
    """The armed deadline of one request's body. A route that legitimately streams long
    uploads (producer reconciliation) may :meth:`arm` it again with a longer timeout."""

    def __init__(self, content: StreamReader) -> None:
        self._content = content
        self._timer: asyncio.TimerHandle | None = None

    def arm(self, timeout_s: float) -> None:
        """(Re)start the deadline: the rest of the body must arrive within ``timeout_s``."""
        self.cancel()
        content = self._content

        def expire() -> None:
            if not content.is_eof():
                content.set_exception(BodyDeadlineExceeded(
                    f"the request body did not arrive within {timeout_s:g} s"))

        self._timer = asyncio.get_running_loop().call_later(timeout_s, expire)

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


BODY_DEADLINE: web.RequestKey[BodyDeadline] = web.RequestKey(
    "postwire_body_deadline", BodyDeadline)


def body_limits_middleware(budget: BodyBudget, body_timeout_s: float) -> Middleware:
    """Arms the body deadline (``request[BODY_DEADLINE]`` while a body is expected) and gives
    the request a reservation in ``budget``."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        reservation = BodyReservation(budget)
        request[BODY_RESERVATION] = reservation
        deadline: BodyDeadline | None = None
        if request.body_exists and not request.content.is_eof():
            deadline = BodyDeadline(request.content)
            deadline.arm(body_timeout_s)
            request[BODY_DEADLINE] = deadline
        try:
            return await handler(request)
        finally:
            if deadline is not None:
                deadline.cancel()
            reservation.release()

    return middleware
