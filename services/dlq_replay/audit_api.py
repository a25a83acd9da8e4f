"""The audit log resource: ``GET /admin/v1/audit-log``."""

from __future__ import annotations

from aiohttp import web

from services.dlq_replay.audit import list_audit
from services.dlq_replay.context import CTX
from services.dlq_replay.params import PAGING
from shared.http.query import check_query, query_limit, query_str


async def get_audit_log(request: web.Request) -> web.Response:
    """``GET /admin/v1/audit-log``: newest first; optional exact filters."""
    check_query(request, ("operator", "action", "target", *PAGING))
    filters = {name: query_str(request, name, 128) for name in ("operator", "action", "target")}
    page = await list_audit(request.app[CTX].pool, limit=query_limit(request),
                            cursor=query_str(request, "cursor", 512), filters=filters)
    return web.json_response(page.to_json())


def setup_audit_routes(app: web.Application) -> None:
    app.router.add_get("/admin/v1/audit-log", get_audit_log)
