"""HTTP request metrics shared by every service's API (declared once per registry)."""

from __future__ import annotations

import time

from aiohttp import web
from aiohttp.typedefs import Middleware
from prometheus_client import CollectorRegistry, Counter, Histogram

from shared.http.types import Handler

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class HttpMetrics:
    """``http_requests_total`` by route and status; ``http_request_duration_seconds`` by route."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter("http_requests_total",
                                "HTTP requests answered, by route and status",
                                ["method", "route", "status"], registry=registry)
        self.latency = Histogram("http_request_duration_seconds",
                                 "Time to answer an HTTP request, by route", ["method", "route"],
                                 buckets=LATENCY_BUCKETS, registry=registry)

    def middleware(self) -> Middleware:
        """Observes every request; the route label is the route template (bounded cardinality).
        Must be the outermost middleware, so it sees the status the error middleware chose."""

        @web.middleware
        async def observe(request: web.Request, handler: Handler) -> web.StreamResponse:
            start = time.perf_counter()
            status = 500
            try:
                response = await handler(request)
                status = response.status
                return response
            except web.HTTPException as exc:
                status = exc.status
                raise
            finally:
                resource = request.match_info.route.resource
                route = resource.canonical if resource is not None else "unmatched"
                self.requests.labels(request.method, route, str(status)).inc()
                self.latency.labels(request.method, route).observe(time.perf_counter() - start)

        return observe
