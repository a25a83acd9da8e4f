"""``POST /admin/v1/portal-sessions``: an operator makes a one-time merchant portal link.

Body ``{"account_id": "...", "expires_in_s": 3600}`` (``expires_in_s`` 60..86400, default
3600) -> 201 ``{"url", "account_id", "expires_at"}``. The link works once; the portal session
it opens ends at ``expires_at``. The URL's origin is ``POSTWIRE_ADMIN_PUBLIC_URL`` when set
(the address merchants reach the admin service at, e.g. behind a proxy), else the request's.
Audited as ``portal.session.create`` with the account id as target (never the token).
"""

from __future__ import annotations

import logging
from typing import Any

import asyncpg
import orjson
from aiohttp import web

from services.dlq_replay.api_models import PortalSessionCreate
from services.dlq_replay.audit import write_audit
from services.dlq_replay.console.sessions import create_portal_link
from services.dlq_replay.context import CTX
from shared.adapters.pg.txn import in_transaction
from shared.core.timefmt import format_ts
from shared.endpoints.validation import validate_account_id
from shared.http.auth import principal_of
from shared.http.body import read_json_object
from shared.http.models import convert_body
from shared.http.query import check_query
from shared.logging import fields

log = logging.getLogger(__name__)


def parse_portal_session(body: dict[str, Any]) -> tuple[str, int]:
    """``(account_id, expires_in_s)`` of a request body (:class:`PortalSessionCreate`);
    InvalidRequest naming the field."""
    model = convert_body(body, PortalSessionCreate)
    return validate_account_id(model.account_id), model.expires_in_s


async def post_portal_session(request: web.Request) -> web.Response:
    """Create the link (audited) and answer 201."""
    check_query(request, ())
    ctx = request.app[CTX]
    operator = principal_of(request)
    account_id, expires_in_s = parse_portal_session(await read_json_object(request, 4096))

    async def work(conn: asyncpg.Connection) -> tuple[str, str]:
        token, expires_at = await create_portal_link(conn, account_id=account_id,
                                                     operator=operator,
                                                     expires_in_s=expires_in_s)
        at = format_ts(expires_at) or ""
        await write_audit(conn, operator=operator, action="portal.session.create",
                          target=account_id, reason=None,
                          details={"expires_in_s": expires_in_s, "expires_at": at})
        return token, at

    token, expires_at = await in_transaction(ctx.pool, work)
    log.info("portal link created", extra=fields(account_id=account_id, operator=operator,
                                                 expires_at=expires_at))
    origin = ctx.settings.public_url or f"{request.scheme}://{request.host}"
    body = {"url": f"{origin.rstrip('/')}/portal/start?token={token}", "account_id": account_id,
            "expires_at": expires_at}
    return web.Response(status=201, body=orjson.dumps(body), content_type="application/json")
