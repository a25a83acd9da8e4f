"""The operator console's pages and actions (``/console``).

Pages: overview, endpoints, events (search and one event), dead letters, bulk replays, audit
log. Actions (POST, CSRF-checked by the guard) call :mod:`services.dlq_replay.actions` and
:mod:`.endpoint_actions`, the code behind the admin API, under the signed-in operator's name.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from services.dlq_replay.actions import run_bulk_start, run_cancel, run_event_replay
from services.dlq_replay.audit import list_audit
from services.dlq_replay.console import forms, queries
from services.dlq_replay.console.endpoint_actions import set_enabled
from services.dlq_replay.console.guard import (
    session_of,
)
from services.dlq_replay.console.render import render_page
from services.dlq_replay.console.state import CONSOLE
from services.dlq_replay.context import CTX
from services.dlq_replay.reads import DeadLetterQuery, event_view, list_dead_letters
from services.dlq_replay.schemas import (
    BulkReplayRequest,
    EventReplayRequest,
    parse_filter,
)
from shared.core.errors import InvalidRequest, NotFound
from shared.core.ids import is_valid_id
from shared.core.timefmt import format_ts

BULK_FILTERS = ("endpoint_id", "account_id", "type", "since", "until")


def _page(request: web.Request, template: str, **context: Any) -> web.Response:
    session = session_of(request)
    return render_page(template, kind="console", session=session, path=request.path,
                       csrf=session.csrf_token, **context)


def _older(form: dict[str, str], cursor: str | None, key: str = "cursor") -> str | None:
    """The link to the next (older) page, keeping the filters."""
    if cursor is None:
        return None
    return "?" + urlencode({**{k: v for k, v in form.items() if v}, key: cursor})


# --- pages -----------------------------------------------------------------------------------

async def overview(request: web.Request) -> web.Response:
    """``GET /console``: headline numbers and charts."""
    state = request.app[CONSOLE]
    data = await state.overview.get(request.app[CTX].pool, list(state.lag.samples))
    return _page(request, "overview.html", overview=data)


async def endpoints(request: web.Request) -> web.Response:
    """``GET /console/endpoints``: endpoints with their health, optionally of one account."""
    account_id = forms.text(request.query, "account_id", 64)
    rows, more = queries.cut_page(await queries.endpoints_with_health(
        request.app[CTX].pool, account_id=account_id,
        before=forms.text(request.query, "before", 64), limit=queries.PAGE_ROWS + 1))
    return _page(request, "endpoints.html", endpoints=rows, account_id=account_id or "",
                 older=_older({"account_id": account_id or ""}, more, "before"))


async def toggle_endpoint(request: web.Request) -> web.StreamResponse:
    """``POST /console/endpoints/{id}/enabled``: enable or disable (audited)."""
    form = await request.post()
    value = forms.required(form, "enabled", 5)
    if value not in ("true", "false"):
        raise InvalidRequest("enabled must be true or false", param="enabled")
    await set_enabled(request.app[CTX], actor=session_of(request).actor,
                      endpoint_id=request.match_info["endpoint_id"], enabled=value == "true",
                      account_id=None, reason=forms.text(form, "reason", 1000))
    back = forms.text(form, "back", 200) or "/console/endpoints"
    raise web.HTTPSeeOther(back if back.startswith("/console/") else "/console/endpoints")


async def events(request: web.Request) -> web.StreamResponse:
    """``GET /console/events``: search by id, account, type and time range."""
    q = request.query
    event_id = forms.text(q, "event_id", 64)
    if event_id is not None:
        raise web.HTTPSeeOther(f"/console/events/{event_id}")
    search = queries.EventSearch(account_id=forms.text(q, "account_id", 64),
                                 type=forms.text(q, "type", 128),
                                 since=forms.timestamp(q, "since"),
                                 until=forms.timestamp(q, "until"))
    searched = any(v is not None for v in (search.account_id, search.type, search.since,
                                           search.until))
    rows, more = queries.cut_page(await queries.search_events(
        request.app[CTX].pool, search, before=forms.text(q, "before", 64),
        limit=queries.PAGE_ROWS + 1)) if searched else ([], None)
    form = {k: q.get(k, "") for k in ("account_id", "type", "since", "until")}
    return _page(request, "events.html", events=rows, searched=searched, form=form,
                 older=_older(form, more, "before"))


async def event(request: web.Request) -> web.Response:
    """``GET /console/events/{id}``: the event, its deliveries and every attempt."""
    event_id = request.match_info["event_id"]
    if not is_valid_id(event_id, "evt"):
        raise NotFound(f"no event {event_id}")
    view = await event_view(request.app[CTX].pool, event_id)
    return _page(request, "event.html", event=view, outcomes=None)


async def replay_event(request: web.Request) -> web.Response:
    """``POST /console/events/{id}/replay``: replay its dead deliveries, and with
    ``include_succeeded`` its succeeded ones too (audited)."""
    event_id = request.match_info["event_id"]
    if not is_valid_id(event_id, "evt"):
        raise NotFound(f"no event {event_id}")
    form = await request.post()
    include_succeeded = form.get("include_succeeded") == "true"
    result = await run_event_replay(
        request.app[CTX], actor=session_of(request).actor, event_id=event_id,
        request=EventReplayRequest(forms.required(form, "reason"), None, include_succeeded))
    return _page(request, "replay_result.html", results=[(event_id, result.body)])


def _dead_letter_query(q: Any) -> DeadLetterQuery:
    return DeadLetterQuery(endpoint_id=forms.text(q, "endpoint_id", 64),
                           account_id=forms.text(q, "account_id", 64),
                           type=forms.text(q, "type", 128), event_id=forms.text(q, "event_id", 64),
                           since=forms.timestamp(q, "since"), until=forms.timestamp(q, "until"))


async def dead_letters(request: web.Request) -> web.Response:
    """``GET /console/dead-letters``: filters, multi-select, replay."""
    q = request.query
    page = await list_dead_letters(request.app[CTX].pool, _dead_letter_query(q), limit=50,
                                   cursor=forms.text(q, "cursor", 512))
    keys = ("event_id", "endpoint_id", "account_id", "type", "since", "until")
    form = {k: q.get(k, "") for k in keys}
    bulk = urlencode({k: form[k] for k in BULK_FILTERS if form[k]})
    return _page(request, "dead_letters.html", page=page.to_json(), form=form,
                 older=_older(form, page.next_cursor),
                 bulk_link="/console/replays" + (f"?{bulk}" if bulk else ""))


async def replay_selected(request: web.Request) -> web.Response:
    """``POST /console/dead-letters/replay``: replay the checked dead letters, one audited
    event replay per event (limited to the checked deliveries' endpoints)."""
    form = await request.post()
    reason = forms.required(form, "reason")
    chosen = [v for v in form.getall("delivery_id", []) if isinstance(v, str)]
    if not chosen or len(chosen) > 500:
        raise InvalidRequest("select 1 to 500 dead letters to replay", param="delivery_id")
    ctx = request.app[CTX]
    rows = await ctx.pool.fetch(
        "SELECT event_id, endpoint_id FROM dead_letters WHERE delivery_id = ANY($1::text[])"
        " ORDER BY event_id, endpoint_id", chosen)
    if not rows:
        raise NotFound("none of the selected dead letters exists", param="delivery_id")
    by_event: dict[str, list[str]] = defaultdict(list)
    for row in rows:
        by_event[row["event_id"]].append(row["endpoint_id"])
    results = []
    for event_id, endpoint_ids in by_event.items():
        result = await run_event_replay(
            ctx, actor=session_of(request).actor, event_id=event_id,
            request=EventReplayRequest(reason, tuple(dict.fromkeys(endpoint_ids)), False))
        results.append((event_id, result.body))
    return _page(request, "replay_result.html", results=results)


async def replays(request: web.Request) -> web.Response:
    """``GET /console/replays``: bulk replays with live progress, and a form to start one."""
    jobs = await queries.bulk_jobs(request.app[CTX].pool)
    prefill = {k: request.query.get(k, "") for k in BULK_FILTERS}
    return _page(request, "replays.html", jobs=jobs, prefill=prefill)


async def start_replay(request: web.Request) -> web.StreamResponse:
    """``POST /console/replays``: start a bulk replay of the matching dead letters."""
    form = await request.post()
    raw_filter: dict[str, Any] = {}
    for name in ("endpoint_id", "account_id", "type"):
        value = forms.text(form, name, 128)
        if value is not None:
            raw_filter[name] = value
    for name in ("since", "until"):
        value_ts = forms.timestamp(form, name)
        if value_ts is not None:
            raw_filter[name] = format_ts(value_ts)
    bulk = BulkReplayRequest(forms.required(form, "reason"), parse_filter(raw_filter),
                             forms.integer(form, "max_per_second", 100, 1, 10000))
    job, _ = await run_bulk_start(request.app[CTX], actor=session_of(request).actor,
                                  request=bulk)
    raise web.HTTPSeeOther(f"/console/replays#{job['id']}")


async def cancel_replay(request: web.Request) -> web.StreamResponse:
    """``POST /console/replays/{id}/cancel``."""
    job_id = request.match_info["replay_id"]
    if not is_valid_id(job_id, "rpl"):
        raise NotFound(f"no replay {job_id}")
    form = await request.post()
    await run_cancel(request.app[CTX], actor=session_of(request).actor, job_id=job_id,
                     reason=forms.text(form, "reason", 1000))
    raise web.HTTPSeeOther("/console/replays")


async def replays_progress(request: web.Request) -> web.Response:
    """``GET /console/api/replays?id=...``: progress of the named jobs, as JSON."""
    ids = [i for i in request.query.getall("id", []) if is_valid_id(i, "rpl")][:100]
    jobs = await queries.jobs_progress(request.app[CTX].pool, ids)
    return web.json_response({"data": jobs})


async def audit(request: web.Request) -> web.Response:
    """``GET /console/audit``: the audit log, newest first, with exact filters."""
    q = request.query
    filters = {k: forms.text(q, k, 128) for k in ("operator", "action", "target")}
    page = await list_audit(request.app[CTX].pool, limit=50,
                            cursor=forms.text(q, "cursor", 512), filters=filters)
    form = {k: v or "" for k, v in filters.items()}
    return _page(request, "audit.html", page=page.to_json(), form=form,
                 older=_older(form, page.next_cursor))


def setup_operator_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/console", overview)
    r.add_get("/console/endpoints", endpoints)
    r.add_post("/console/endpoints/{endpoint_id}/enabled", toggle_endpoint)
    r.add_get("/console/events", events)
    r.add_get("/console/events/{event_id}", event)
    r.add_post("/console/events/{event_id}/replay", replay_event)
    r.add_get("/console/dead-letters", dead_letters)
    r.add_post("/console/dead-letters/replay", replay_selected)
    r.add_get("/console/replays", replays)
    r.add_post("/console/replays", start_replay)
    r.add_post("/console/replays/{replay_id}/cancel", cancel_replay)
    r.add_get("/console/api/replays", replays_progress)
    r.add_get("/console/audit", audit)
