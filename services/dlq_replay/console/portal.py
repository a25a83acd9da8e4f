"""The merchant portal (``/portal``): one account's endpoints, deliveries and attempts.

A merchant arrives with a one-time link made by ``POST /admin/v1/portal-sessions``
(:func:`create_portal_session`); ``GET /portal/start?token=...`` redeems it for a session
cookie scoped to ``/portal`` that ends when the link's ``expires_in_s`` runs out. Every query
and action filters by the session's account in SQL, so another account's endpoint or delivery
id answers 404, exactly like an id that does not exist. Actions are audited as
``portal:<account>``.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from services.dlq_replay.actions import run_event_replay
from services.dlq_replay.console import endpoint_actions as actions
from services.dlq_replay.console import forms, queries
from services.dlq_replay.console.guard import (
    COOKIE,
    clear_session_cookie,
    see_other,
    session_of,
    set_session_cookie,
)
from services.dlq_replay.console.render import render_page
from services.dlq_replay.console.sessions import (
    create_session,
    end_session,
    peek_portal_link,
    redeem_portal_link,
)
from services.dlq_replay.context import CTX
from services.dlq_replay.schemas import EventReplayRequest
from shared.adapters.pg.txn import in_transaction
from shared.core.delivery_status import STATUSES
from shared.core.errors import (
    AuthenticationFailed,
    Conflict,
    InvalidRequest,
    NotFound,
)
from shared.core.ids import is_valid_id
from shared.endpoints import operations as ops
from shared.endpoints.validation import (
    DEFAULT_GRACE_PERIOD_S,
    MAX_GRACE_PERIOD_S,
    validate_create,
    validate_patch,
)
from shared.logging import fields

log = logging.getLogger(__name__)

FAILED_STATUSES = frozenset({"dead"})
DELIVERY_STATUSES = STATUSES


def _page(request: web.Request, template: str, **context: Any) -> web.Response:
    session = session_of(request)
    return render_page(template, kind="portal", session=session, path=request.path,
                       csrf=session.csrf_token, account_id=session.principal, **context)


def _account(request: web.Request) -> str:
    return session_of(request).principal


def _endpoint_id(request: web.Request) -> str:
    return ops.checked_id(request.match_info["endpoint_id"])


_LINK_UNUSABLE = ("this portal link is invalid, expired or already used; ask for a new one")


async def start_page(request: web.Request) -> web.Response:
    """``GET /portal/start?token=``: a page with one button that opens the portal.

    Looking does not use the link up: mail scanners and link previews fetch links in emails,
    and a one-time link they opened would be spent before the merchant clicks it. Only the
    button's POST redeems it."""
    token = request.query.get("token", "")
    account_id = await peek_portal_link(request.app[CTX].pool, token) if token else None
    if account_id is None:
        raise AuthenticationFailed(_LINK_UNUSABLE)
    return render_page("portal_start.html", kind="portal", session=None, path=request.path,
                       csrf="", token=token, link_account=account_id)


async def start(request: web.Request) -> web.StreamResponse:
    """``POST /portal/start`` (form field ``token``): redeem the link for a session cookie.

    The guard refuses it from another site's page (``Origin``)."""
    form = await request.post()
    token = form.get("token")
    ctx = request.app[CTX]

    async def work(conn: Any) -> tuple[str, int, str] | None:
        redeemed = await redeem_portal_link(conn, token) if isinstance(token, str) else None
        if redeemed is None:
            return None
        account_id, expires_at = redeemed
        value, session = await create_session(conn, kind="portal", principal=account_id,
                                              expires_at=expires_at)
        remaining = int((session.expires_at - await conn.fetchval("SELECT now()"))
                        .total_seconds())
        return value, remaining, account_id

    made = await in_transaction(ctx.pool, work)
    if made is None:
        log.warning("portal link refused (unknown, expired or used)",
                    extra=fields(client=request.remote))
        raise AuthenticationFailed(_LINK_UNUSABLE)
    log.info("portal session opened", extra=fields(account_id=made[2], client=request.remote))
    response = see_other("/portal")
    set_session_cookie(response, request, "portal", made[0], made[1])
    return response


async def logout(request: web.Request) -> web.StreamResponse:
    """``POST /portal/logout``: the portal session ends on the server, the cookie is cleared."""
    token = request.cookies.get(COOKIE["portal"])
    if token:
        await end_session(request.app[CTX].pool, token)
    response = render_page("signed_out.html", kind="portal", session=None, path=request.path,
                           csrf="")
    clear_session_cookie(response, "portal")
    return response


async def home(request: web.Request) -> web.Response:
    """``GET /portal``: the account's endpoints and a form to add one."""
    rows = await queries.endpoints_with_health(request.app[CTX].pool,
                                               account_id=_account(request))
    return _page(request, "portal_home.html", endpoints=rows, created=None)


async def add_endpoint(request: web.Request) -> web.Response:
    """``POST /portal/endpoints``: create an endpoint for this account."""
    form = await request.post()
    body: dict[str, Any] = {"account_id": _account(request), "url": forms.required(form, "url",
                                                                                    2048)}
    types = forms.event_types(forms.text(form, "event_types", 8192))
    if types:
        body["event_types"] = types
    description = forms.text(form, "description", 1024)
    if description is not None:
        body["description"] = description
    spec = validate_create(body)
    created = await actions.create_endpoint(request.app[CTX], actor=session_of(request).actor,
                                            spec=spec)
    return _page(request, "portal_secret.html", endpoint_id=created.row["id"],
                 secret=created.secret, title="Endpoint created",
                 note="This is the endpoint's signing secret. You can reveal it again later.")


async def endpoint(request: web.Request) -> web.Response:
    """``GET /portal/endpoints/{id}``: one endpoint, its controls and latest deliveries."""
    endpoint_id = _endpoint_id(request)
    pool = request.app[CTX].pool
    rows = await queries.endpoints_with_health(pool, account_id=_account(request),
                                               endpoint_id=endpoint_id, limit=1)
    if not rows:
        raise ops.not_found(endpoint_id)
    status = forms.text(request.query, "status", 16)
    if status is not None and status not in DELIVERY_STATUSES:
        raise InvalidRequest(f"status must be one of {', '.join(DELIVERY_STATUSES)}",
                             param="status")
    deliveries, more = queries.cut_page(await queries.endpoint_deliveries(
        pool, account_id=_account(request), endpoint_id=endpoint_id, status=status,
        before=forms.text(request.query, "before", 64), limit=queries.PAGE_ROWS + 1))
    older = None if more is None else "?" + urlencode(
        {**({"status": status} if status else {}), "before": more})
    return _page(request, "portal_endpoint.html", endpoint=rows[0], deliveries=deliveries,
                 grace_default=DEFAULT_GRACE_PERIOD_S, grace_max=MAX_GRACE_PERIOD_S,
                 status_filter=status or "", statuses=DELIVERY_STATUSES, older=older)


async def update_endpoint(request: web.Request) -> web.StreamResponse:
    """``POST /portal/endpoints/{id}``: change event types (and description)."""
    endpoint_id = _endpoint_id(request)
    form = await request.post()
    changes: dict[str, Any] = {"event_types": forms.event_types(forms.text(form, "event_types",
                                                                           8192))}
    if "description" in form:
        changes["description"] = forms.text(form, "description", 1024)
    await actions.update_endpoint(request.app[CTX], actor=session_of(request).actor,
                                  endpoint_id=endpoint_id, changes=validate_patch(changes),
                                  account_id=_account(request))
    raise web.HTTPSeeOther(f"/portal/endpoints/{endpoint_id}")


async def set_enabled(request: web.Request) -> web.StreamResponse:
    """``POST /portal/endpoints/{id}/enabled``: disable (or enable again)."""
    endpoint_id = _endpoint_id(request)
    form = await request.post()
    enabled = forms.required(form, "enabled", 5) == "true"
    await actions.set_enabled(request.app[CTX], actor=session_of(request).actor,
                              endpoint_id=endpoint_id, enabled=enabled,
                              account_id=_account(request))
    raise web.HTTPSeeOther(f"/portal/endpoints/{endpoint_id}")


async def rotate(request: web.Request) -> web.Response:
    """``POST /portal/endpoints/{id}/rotate``: new secret, old one valid for the grace period."""
    endpoint_id = _endpoint_id(request)
    form = await request.post()
    grace = forms.integer(form, "grace_period_s", DEFAULT_GRACE_PERIOD_S, 0, MAX_GRACE_PERIOD_S)
    secret = await actions.rotate_secret(request.app[CTX], actor=session_of(request).actor,
                                         endpoint_id=endpoint_id, grace_period_s=grace,
                                         account_id=_account(request))
    note = (f"Deliveries carry signatures by both the new and the previous secret for the next "
            f"{grace} seconds." if grace else "The previous secret no longer signs.")
    return _page(request, "portal_secret.html", endpoint_id=endpoint_id, secret=secret,
                 title="Secret rotated", note=note)


async def reveal(request: web.Request) -> web.Response:
    """``POST /portal/endpoints/{id}/secret``: show the current secret (audited)."""
    endpoint_id = _endpoint_id(request)
    secret = await actions.reveal_secret(request.app[CTX], actor=session_of(request).actor,
                                         endpoint_id=endpoint_id, account_id=_account(request))
    return _page(request, "portal_secret.html", endpoint_id=endpoint_id, secret=secret,
                 title="Signing secret", note="Keep it secret; rotate it if it leaked.")


async def test_event(request: web.Request) -> web.StreamResponse:
    """``POST /portal/endpoints/{id}/test``: send a ``postwire.test`` event to it."""
    endpoint_id = _endpoint_id(request)
    made = await actions.send_test_event(request.app[CTX], actor=session_of(request).actor,
                                         endpoint_id=endpoint_id, account_id=_account(request))
    raise web.HTTPSeeOther(f"/portal/deliveries/{made.delivery_id}")


def _delivery_id(request: web.Request) -> str:
    delivery_id = request.match_info["delivery_id"]
    if not is_valid_id(delivery_id, "dlv"):
        raise NotFound(f"no delivery {delivery_id}")
    return delivery_id


async def delivery(request: web.Request) -> web.Response:
    """``GET /portal/deliveries/{id}``: one delivery, its payload and every attempt."""
    view = await queries.account_delivery(request.app[CTX].pool, account_id=_account(request),
                                          delivery_id=_delivery_id(request))
    return _page(request, "portal_delivery.html", delivery=view)


async def replay(request: web.Request) -> web.StreamResponse:
    """``POST /portal/deliveries/{id}/replay``: send a failed (dead) delivery again."""
    delivery_id = _delivery_id(request)
    ctx = request.app[CTX]
    view = await queries.account_delivery(ctx.pool, account_id=_account(request),
                                          delivery_id=delivery_id)
    if view["status"] not in FAILED_STATUSES:
        raise Conflict(f"delivery {delivery_id} is {view['status']}; only failed (dead) "
                       "deliveries can be replayed")
    form = await request.post()
    reason = forms.text(form, "reason", 1000) or "replayed by the merchant from the portal"
    await run_event_replay(ctx, actor=session_of(request).actor, event_id=view["event_id"],
                           request=EventReplayRequest(reason, (view["endpoint_id"],), False))
    raise web.HTTPSeeOther(f"/portal/deliveries/{delivery_id}")


def setup_portal_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/portal/start", start_page)
    r.add_post("/portal/start", start)
    r.add_post("/portal/logout", logout)
    r.add_get("/portal", home)
    r.add_post("/portal/endpoints", add_endpoint)
    r.add_get("/portal/endpoints/{endpoint_id}", endpoint)
    r.add_post("/portal/endpoints/{endpoint_id}", update_endpoint)
    r.add_post("/portal/endpoints/{endpoint_id}/enabled", set_enabled)
    r.add_post("/portal/endpoints/{endpoint_id}/rotate", rotate)
    r.add_post("/portal/endpoints/{endpoint_id}/secret", reveal)
    r.add_post("/portal/endpoints/{endpoint_id}/test", test_event)
    r.add_get("/portal/deliveries/{delivery_id}", delivery)
    r.add_post("/portal/deliveries/{delivery_id}/replay", replay)
