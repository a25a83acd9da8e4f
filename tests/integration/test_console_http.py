"""The operator console and the merchant portal over plain HTTP (no browser), against the real
admin app on Postgres and the broker: sign-in and session cookies, session expiry and logout,
CSRF on state changes, the security headers, portal links (one-time, expiring), account
scoping (another account's ids are 404) and escaping of event payloads and responses."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import asyncpg
import orjson
import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from services.dlq_replay.console.guard import web_guard
from shared.core.ids import new_id
from shared.core.timefmt import utcnow
from tests.conftest import TEST_ADMIN_TOKEN, ServiceEnvFactory
from tests.support.admin_app import AdminApp, running_admin
from tests.support.seeding import SeededEndpoint, insert_dead_deliveries, insert_endpoint

pytestmark = pytest.mark.asyncio(loop_scope="session")

URL = "http://127.0.0.1:18080/hook"
XSS_SCRIPT = "<script>window.__pwned = 1</script>"
XSS_IMG = "<img src=x onerror=\"window.__pwned = 2\">"
_CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')


@dataclass
class Browser:
    """A cookie-keeping HTTP client that behaves like one browser profile."""

    http: aiohttp.ClientSession
    base: str

    async def get(self, path: str, **kw: Any) -> tuple[int, str, aiohttp.ClientResponse]:
        async with self.http.get(self.base + path, allow_redirects=False, **kw) as resp:
            return resp.status, await resp.text(), resp

    async def post(self, path: str, data: dict[str, Any] | list[tuple[str, str]],
                   **kw: Any) -> tuple[int, str, aiohttp.ClientResponse]:
        async with self.http.post(self.base + path, data=data, allow_redirects=False,
                                  **kw) as resp:
            return resp.status, await resp.text(), resp

    async def csrf_of(self, path: str) -> str:
        status, html, _ = await self.get(path)
        assert status == 200, html
        match = _CSRF_RE.search(html)
        assert match is not None, html
        return match.group(1)

    async def login(self, token: str = TEST_ADMIN_TOKEN) -> aiohttp.ClientResponse:
        csrf = await self.csrf_of("/console/login")
        status, html, resp = await self.post("/console/login",
                                             {"csrf_token": csrf, "token": token})
        assert status == 303, html
        return resp


@pytest_asyncio.fixture(loop_scope="session")
async def browser(admin: AdminApp) -> AsyncIterator[Browser]:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        yield Browser(http, str(admin.client.make_url("")).rstrip("/"))


@pytest_asyncio.fixture(loop_scope="session")
async def other_browser(admin: AdminApp) -> AsyncIterator[Browser]:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        yield Browser(http, str(admin.client.make_url("")).rstrip("/"))


def _account() -> str:
    return f"acct_{uuid.uuid4().hex[:8]}"


async def _portal(admin: AdminApp, browser: Browser, account_id: str) -> str:
    """Open a portal session for ``account_id`` in ``browser``; returns the link used."""
    status, body, _ = await admin.call("POST", "/admin/v1/portal-sessions",
                                       {"account_id": account_id, "expires_in_s": 600})
    assert status == 201, body
    assert body["account_id"] == account_id
    link = body["url"]
    path = link[link.index("/portal/"):]
    token = path.split("token=", 1)[1]
    for _ in range(2):  # looking at the link (a mail scanner, a preview) does not use it up
        status, html, _ = await browser.get(path)
        assert status == 200 and f'name="token" value="{token}"' in html, html
    status, html, resp = await browser.post("/portal/start", {"token": token})
    assert status == 303 and resp.headers["Location"] == "/portal", html
    cookie = resp.cookies["postwire_portal"]
    # Lax, not Strict: merchants arrive from a link in an email (another site)
    assert (cookie["httponly"], cookie["samesite"], cookie["path"]) == (True, "Lax", "/portal")
    assert 0 < int(cookie["max-age"]) <= 600
    return str(path)


async def _event_with(pool: asyncpg.Pool, endpoint: SeededEndpoint, data: dict[str, Any],
                      excerpt: str) -> tuple[str, str]:
    """A dead event holding ``data``, with one attempt whose response excerpt is ``excerpt``."""
    event_id, delivery_id = new_id("evt"), new_id("dlv")
    now = utcnow()
    body = orjson.dumps({"id": event_id, "type": "invoice.paid", "timestamp": "x",
                         "account_id": endpoint.account_id, "data": data})
    await pool.execute("INSERT INTO events (id, account_id, type, body, created_at,"
                       " delivery_count) VALUES ($1, $2, 'invoice.paid', $3, $4, 1)",
                       event_id, endpoint.account_id, body, now)
    await pool.execute("INSERT INTO deliveries (id, event_id, endpoint_id, account_id, status,"
                       " attempt_count, created_at, updated_at) VALUES ($1, $2, $3, $4, 'dead',"
                       " 1, $5, $5)", delivery_id, event_id, endpoint.id, endpoint.account_id,
                       now)
    await pool.execute("INSERT INTO attempts (id, delivery_id, attempt, started_at, duration_ms,"
                       " status_code, response_excerpt) VALUES ($1, $2, 1, $3, 12, 400, $4)",
                       new_id("att"), delivery_id, now, excerpt)
    return event_id, delivery_id


async def test_console_needs_a_session_and_an_admin_token(browser: Browser) -> None:
    status, _, resp = await browser.get("/console/events?type=a")
    assert status == 303 and resp.headers["Location"] == (
        "/console/login?next=/console/events?type%3Da")  # next = /console/events?type=a
    status, html, resp = await browser.get("/console/api/replays")
    assert status == 401 and resp.content_type == "application/json"
    assert orjson.loads(html)["error"]["type"] == "authentication_failed"
    # a bearer token is for the API; it does not open the console
    status, _, _ = await browser.get("/console",
                                     headers={"Authorization": f"Bearer {TEST_ADMIN_TOKEN}"})
    assert status == 303
    csrf = await browser.csrf_of("/console/login")
    status, html, _ = await browser.post("/console/login",
                                         {"csrf_token": csrf, "token": "wrong-token-123"})
    assert status == 401 and "not valid" in html
    status, html, _ = await browser.post("/console/login", {"csrf_token": "forged",
                                                            "token": TEST_ADMIN_TOKEN})
    assert status == 403


async def test_sign_in_returns_to_the_page_asked_for(browser: Browser) -> None:
    status, html, _ = await browser.get("/console/login?next=%2Fconsole%2Faudit")
    csrf = _CSRF_RE.search(html)
    assert status == 200 and csrf is not None and 'name="next" value="/console/audit"' in html
    status, _, resp = await browser.post("/console/login", {
        "csrf_token": csrf.group(1), "token": TEST_ADMIN_TOKEN, "next": "/console/audit"})
    assert status == 303 and resp.headers["Location"] == "/console/audit"
    status, html, _ = await browser.get("/console/login?next=https%3A%2F%2Fevil.example")
    assert 'name="next" value="/console"' in html


async def test_login_sets_a_hardened_cookie_and_security_headers(browser: Browser) -> None:
    resp = await browser.login()
    cookie = resp.cookies["postwire_console"]
    assert cookie["httponly"] is True
    assert cookie["samesite"] == "Strict"
    assert cookie["path"] == "/console"
    assert int(cookie["max-age"]) == 28800
    status, html, resp = await browser.get("/console")
    assert status == 200 and 'id="operator">admin<' in html
    csp = resp.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "script-src 'self'" in csp
    assert "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
    assert resp.headers["X-Frame-Options"] == "DENY"
    assert resp.headers["Referrer-Policy"] == "same-origin"
    assert "<script>" not in html  # the only script is the external, same-origin one
    for chart in ("Deliveries per second", "Success ratio", "Latency",
                  "Dead letters per hour", "Consumer lag"):
        assert chart in html


async def test_state_changes_need_the_csrf_token_and_are_audited(
        admin: AdminApp, browser: Browser, pool: asyncpg.Pool) -> None:
    endpoint = await insert_endpoint(pool, account_id=_account(), url=URL)
    await browser.login()
    path = f"/console/endpoints/{endpoint.id}/enabled"
    csrf = await browser.csrf_of("/console/endpoints")
    assert (await browser.post(path, {"enabled": "false"}))[0] == 403
    assert (await browser.post(path, {"enabled": "false", "csrf_token": "nope"}))[0] == 403
    foreign = {"Origin": "https://evil.example"}
    assert (await browser.post(path, {"enabled": "false", "csrf_token": csrf},
                               headers=foreign))[0] == 403
    assert await pool.fetchval("SELECT enabled FROM endpoints WHERE id = $1", endpoint.id)
    status, _, _ = await browser.post(path, {"enabled": "false", "csrf_token": csrf,
                                             "reason": "merchant asked"})
    assert status == 303
    row = await pool.fetchrow("SELECT enabled, disabled_reason FROM endpoints WHERE id = $1",
                              endpoint.id)
    assert (row["enabled"], row["disabled_reason"]) == (False, "manual")
    status, audit, _ = await admin.call("GET", f"/admin/v1/audit-log?target={endpoint.id}")
    assert [(a["operator"], a["action"], a["reason"]) for a in audit["data"]] == [
        ("admin", "endpoint.disable", "merchant asked")]


async def test_sessions_expire_and_logout_ends_them(browser: Browser, pool: asyncpg.Pool) -> None:
    await browser.login()
    assert (await browser.get("/console"))[0] == 200
    await pool.execute("UPDATE web_sessions SET expires_at = now() - interval '1 second'"
                       " WHERE kind = 'console'")
    assert (await browser.get("/console"))[0] == 303
    await browser.login()
    csrf = await browser.csrf_of("/console")
    token = next(c.value for c in browser.http.cookie_jar if c.key == "postwire_console")
    assert (await browser.post("/console/logout", {"csrf_token": csrf}))[0] == 303
    # the server forgot it: replaying the old cookie value does not sign in
    status, _, _ = await browser.get("/console", cookies={"postwire_console": token})
    assert status == 303


async def test_portal_links_are_one_time_and_validated(
        admin: AdminApp, browser: Browser, other_browser: Browser, pool: asyncpg.Pool) -> None:
    account = _account()
    link = await _portal(admin, browser, account)
    token = link.split("token=", 1)[1]
    status, html, _ = await other_browser.get(link)  # the same link again
    assert status == 401 and "already used" in html
    status, html, _ = await other_browser.post("/portal/start", {"token": token})
    assert status == 401 and "already used" in html
    status, fresh, _ = await admin.call("POST", "/admin/v1/portal-sessions",
                                        {"account_id": account})
    fresh_token = fresh["url"].split("token=", 1)[1]
    status, _, _ = await other_browser.post("/portal/start", {"token": fresh_token},
                                            headers={"Origin": "https://evil.example"})
    assert status == 403  # another site's page cannot open a portal session for you
    assert (await other_browser.get("/portal"))[0] == 401
    status, html, _ = await browser.get("/portal")
    assert status == 200 and f'id="account">{account}<' in html
    for body, param in (({}, "account_id"), ({"account_id": "a b"}, "account_id"),
                        ({"account_id": "a", "expires_in_s": 5}, "expires_in_s"),
                        ({"account_id": "a", "extra": 1}, "extra")):
        status, error, _ = await admin.call("POST", "/admin/v1/portal-sessions", body)
        assert status == 400 and error["error"]["param"] == param, error
    status, audit, _ = await admin.call("GET", f"/admin/v1/audit-log?target={account}")
    assert [a["action"] for a in audit["data"]] == ["portal.session.create"] * 2
    await pool.execute("UPDATE web_sessions SET expires_at = now() WHERE kind = 'portal'"
                       " AND principal = $1", account)
    assert (await browser.get("/portal"))[0] == 401
    # signing out ends the session on the server
    await _portal(admin, other_browser, account)
    csrf = await other_browser.csrf_of("/portal")
    token = next(c.value for c in other_browser.http.cookie_jar if c.key == "postwire_portal")
    status, html, _ = await other_browser.post("/portal/logout", {"csrf_token": csrf})
    assert status == 200 and "signed out" in html
    status, _, _ = await other_browser.get("/portal", cookies={"postwire_portal": token})
    assert status == 401


async def test_portal_refuses_another_accounts_ids(
        admin: AdminApp, browser: Browser, pool: asyncpg.Pool) -> None:
    mine, theirs = _account(), _account()
    own = await insert_endpoint(pool, account_id=mine, url=URL)
    foreign = await insert_endpoint(pool, account_id=theirs, url=URL)
    [own_dead] = await insert_dead_deliveries(pool, own, 1)
    [foreign_dead] = await insert_dead_deliveries(pool, foreign, 1)
    await _portal(admin, browser, mine)
    assert (await browser.get(f"/portal/endpoints/{own.id}"))[0] == 200
    assert (await browser.get(f"/portal/deliveries/{own_dead.delivery_id}"))[0] == 200
    csrf = await browser.csrf_of("/portal")
    assert (await browser.get(f"/portal/endpoints/{foreign.id}"))[0] == 404
    assert (await browser.get(f"/portal/deliveries/{foreign_dead.delivery_id}"))[0] == 404
    for action in ("rotate", "secret", "test", "enabled"):
        status, _, _ = await browser.post(f"/portal/endpoints/{foreign.id}/{action}",
                                          {"csrf_token": csrf, "enabled": "false"})
        assert status == 404, action
    status, _, _ = await browser.post(f"/portal/endpoints/{foreign.id}",
                                      {"csrf_token": csrf, "event_types": "a.*"})
    assert status == 404
    status, _, _ = await browser.post(f"/portal/deliveries/{foreign_dead.delivery_id}/replay",
                                      {"csrf_token": csrf})
    assert status == 404
    foreign_row = await pool.fetchrow(
        "SELECT enabled, event_types, previous_secret FROM endpoints WHERE id = $1", foreign.id)
    assert (foreign_row["enabled"], list(foreign_row["event_types"]),
            foreign_row["previous_secret"]) == (True, ["*"], None)
    assert await pool.fetchval("SELECT status FROM deliveries WHERE id = $1",
                               foreign_dead.delivery_id) == "dead"
    # the console cookie does not open the portal, nor the portal cookie the console
    assert (await browser.get("/console"))[0] == 303


async def test_portal_actions_are_scoped_and_audited_as_the_account(
        admin: AdminApp, browser: Browser, pool: asyncpg.Pool) -> None:
    account = _account()
    await _portal(admin, browser, account)
    csrf = await browser.csrf_of("/portal")
    status, html, _ = await browser.post("/portal/endpoints", {
        "csrf_token": csrf, "url": URL, "event_types": "invoice.*, payment.succeeded"})
    assert status == 200 and "whsec_" in html, html
    endpoint_id = await pool.fetchval("SELECT id FROM endpoints WHERE account_id = $1", account)
    status, html, _ = await browser.post(f"/portal/endpoints/{endpoint_id}",
                                         {"csrf_token": csrf, "event_types": "bad type!"})
    assert status == 400 and "event_types" in html
    status, _, _ = await browser.post(f"/portal/endpoints/{endpoint_id}",
                                      {"csrf_token": csrf, "event_types": "refund.*"})
    assert status == 303
    status, html, _ = await browser.post(f"/portal/endpoints/{endpoint_id}/rotate",
                                         {"csrf_token": csrf, "grace_period_s": "3600"})
    assert status == 200
    row = await pool.fetchrow("SELECT secret, previous_secret, event_types FROM endpoints"
                              " WHERE id = $1", endpoint_id)
    assert row["secret"] in html and row["previous_secret"] is not None
    status, html, _ = await browser.get(f"/portal/endpoints/{endpoint_id}")
    assert status == 200 and 'id="rotation"' in html  # the page says the old one still signs
    assert list(row["event_types"]) == ["refund.*"]
    status, _, resp = await browser.post(f"/portal/endpoints/{endpoint_id}/test",
                                         {"csrf_token": csrf})
    assert status == 303
    delivery_id = resp.headers["Location"].rsplit("/", 1)[-1]
    test = await pool.fetchrow("SELECT d.endpoint_id, e.type FROM deliveries d JOIN events e"
                               " ON e.id = d.event_id WHERE d.id = $1", delivery_id)
    assert (test["endpoint_id"], test["type"]) == (endpoint_id, "postwire.test")
    body = bytes(await pool.fetchval("SELECT e.body FROM deliveries d JOIN events e"
                                     " ON e.id = d.event_id WHERE d.id = $1", delivery_id))
    webhook = orjson.loads(body)  # the webhook body every event has, in the same member order
    assert list(webhook) == ["id", "type", "timestamp", "account_id", "data"]
    assert (webhook["type"], webhook["account_id"]) == ("postwire.test", account)
    assert body == orjson.dumps(webhook) and webhook["data"]["sent_by"]
    assert await pool.fetchval("SELECT status FROM deliveries WHERE id = $1",
                               delivery_id) == "pending"  # no dispatcher here: it waits
    status, audit, _ = await admin.call(
        "GET", f"/admin/v1/audit-log?operator=portal:{account}&limit=100")
    assert [a["action"] for a in reversed(audit["data"])] == [
        "endpoint.create", "endpoint.update", "endpoint.secret.rotate", "endpoint.test_event"]


async def test_event_payloads_and_responses_are_escaped(
        admin: AdminApp, browser: Browser, pool: asyncpg.Pool) -> None:
    account = _account()
    endpoint = await insert_endpoint(pool, account_id=account, url=URL)
    event_id, delivery_id = await _event_with(
        pool, endpoint, {"note": XSS_SCRIPT, "name": XSS_IMG}, f"bad {XSS_SCRIPT} {XSS_IMG}")
    await browser.login()
    status, html, _ = await browser.get(f"/console/events/{event_id}")
    assert status == 200
    for raw in (XSS_SCRIPT, XSS_IMG, "<img"):
        assert raw not in html
    assert "&lt;script&gt;window.__pwned = 1&lt;/script&gt;" in html
    assert "&lt;img src=x onerror=" in html
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        merchant = Browser(http, browser.base)
        await _portal(admin, merchant, account)
        status, html, _ = await merchant.get(f"/portal/deliveries/{delivery_id}")
        assert status == 200
        assert XSS_SCRIPT not in html and XSS_IMG not in html
        assert "&lt;script&gt;" in html
    # query parameters echoed into forms are escaped too
    status, html, _ = await browser.get("/console/dead-letters?type=%22%3E%3Cscript%3E")
    assert status == 200 and '"><script>' not in html


async def test_private_targets_are_refused_on_add_and_on_re_enable(
        service_env: ServiceEnvFactory, pool: asyncpg.Pool) -> None:
    account = _account()
    stale = await insert_endpoint(pool, account_id=account, url=URL, enabled=False)
    async with running_admin(service_env(ALLOW_PRIVATE_TARGETS="false")) as strict, \
            aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        operator = Browser(http, str(strict.client.make_url("")).rstrip("/"))
        await operator.login()
        csrf = await operator.csrf_of("/console/endpoints")
        status, html, _ = await operator.post(f"/console/endpoints/{stale.id}/enabled",
                                              {"csrf_token": csrf, "enabled": "true"})
        assert status == 400 and "url refused" in html
        assert not await pool.fetchval("SELECT enabled FROM endpoints WHERE id = $1", stale.id)
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as mhttp:
            merchant = Browser(mhttp, operator.base)
            await _portal(strict, merchant, account)
            csrf = await merchant.csrf_of("/portal")
            status, html, _ = await merchant.post("/portal/endpoints", {
                "csrf_token": csrf, "url": "http://10.1.2.3:8080/hook"})
            assert status == 400 and "url refused" in html
            status, _, _ = await merchant.post(f"/portal/endpoints/{stale.id}/enabled",
                                               {"csrf_token": csrf, "enabled": "true"})
            assert status == 400
    assert await pool.fetchval("SELECT count(*) FROM endpoints WHERE account_id = $1",
                               account) == 1


async def test_sign_in_is_audited_and_failed_attempts_are_throttled(
        service_env: ServiceEnvFactory) -> None:
    async with running_admin(service_env()) as fresh, \
            aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        operator = Browser(http, str(fresh.client.make_url("")).rstrip("/"))
        await operator.login()
        status, audit, _ = await fresh.call("GET", "/admin/v1/audit-log?action=console.sign_in")
        assert status == 200 and audit["data"][0]["operator"] == "admin"
        csrf = await operator.csrf_of("/console/login")
        for _ in range(10):
            status, _, _ = await operator.post("/console/login",
                                               {"csrf_token": csrf, "token": "guess-123456"})
            assert status == 401
        status, html, _ = await operator.post("/console/login",
                                              {"csrf_token": csrf, "token": TEST_ADMIN_TOKEN})
        assert status == 429 and "too many failed sign-ins" in html


async def test_lists_page_by_id_and_the_portal_filters_by_status(
        admin: AdminApp, browser: Browser, pool: asyncpg.Pool) -> None:
    account = _account()
    made = [await insert_endpoint(pool, account_id=account, url=URL) for _ in range(53)]
    await browser.login()
    status, html, _ = await browser.get(f"/console/endpoints?account_id={account}")
    assert status == 200 and html.count("data-endpoint=") == 50
    older = re.search(r'href="([^"]+)" id="older"', html)
    assert older is not None and older.group(1)
    status, html, _ = await browser.get("/console/endpoints" + older.group(1).replace("&amp;",
                                                                                      "&"))
    shown = set(re.findall(r'data-endpoint="([^"]+)"', html))
    assert shown == {e.id for e in made[:3]} and 'id="older"' not in html
    endpoint = made[0]
    dead = await insert_dead_deliveries(pool, endpoint, 2)
    await insert_dead_deliveries(pool, endpoint, 1, status="succeeded")
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        merchant = Browser(http, browser.base)
        await _portal(admin, merchant, account)
        status, html, _ = await merchant.get(f"/portal/endpoints/{endpoint.id}?status=dead")
        listed = set(re.findall(r'href="/portal/deliveries/([^"]+)"', html))
        assert status == 200 and listed == {d.delivery_id for d in dead}
        status, html, _ = await merchant.get(f"/portal/endpoints/{endpoint.id}")
        assert len(set(re.findall(r'href="/portal/deliveries/([^"]+)"', html))) == 3
        status, html, _ = await merchant.get(f"/portal/endpoints/{endpoint.id}?status=lost")
        assert status == 400 and "status must be one of" in html


async def test_console_replays_run_the_api_code_under_the_operators_name(
        admin: AdminApp, browser: Browser, pool: asyncpg.Pool) -> None:
    account = _account()
    endpoint = await insert_endpoint(pool, account_id=account, url=URL)
    made = await insert_dead_deliveries(pool, endpoint, 23)
    await browser.login()
    csrf = await browser.csrf_of(f"/console/dead-letters?account_id={account}")
    picked = [("csrf_token", csrf), ("reason", "picked three")] + [
        ("delivery_id", d.delivery_id) for d in made[:3]]
    status, html, _ = await browser.post("/console/dead-letters/replay", picked)
    assert status == 200 and html.count('class="outcome">queued<') == 3
    rows = await pool.fetch("SELECT id, status FROM deliveries WHERE endpoint_id = $1",
                            endpoint.id)
    assert sorted(r["status"] for r in rows) == ["dead"] * 20 + ["pending"] * 3
    status, audit, _ = await admin.call("GET", "/admin/v1/audit-log?action=replay.event&limit=100")
    mine = [a for a in audit["data"] if a["target"] in {d.event_id for d in made}]
    assert len(mine) == 3 and {(a["operator"], a["reason"]) for a in mine} == {
        ("admin", "picked three")}
    # the other 20 through a bulk replay (1/s) started and cancelled from the console
    status, _, _ = await browser.post("/console/replays", {
        "csrf_token": csrf, "reason": "the rest", "account_id": account, "max_per_second": "1"})
    assert status == 303
    job = await pool.fetchrow("SELECT id, matched, created_by FROM replay_jobs"
                              " WHERE kind = 'bulk' AND filter->>'account_id' = $1", account)
    assert (job["matched"], job["created_by"]) == (20, "admin")
    status, _, _ = await browser.post(f"/console/replays/{job['id']}/cancel",
                                      {"csrf_token": csrf, "reason": "changed my mind"})
    assert status == 303
    status, audit, _ = await admin.call("GET", f"/admin/v1/audit-log?target={job['id']}")
    assert [(a["operator"], a["action"], a["reason"]) for a in audit["data"]] == [
        ("admin", "replay.bulk.cancel", "changed my mind"),
        ("admin", "replay.bulk.start", "the rest")]
    status, progress, _ = await browser.get(f"/console/api/replays?id={job['id']}")
    assert status == 200 and orjson.loads(progress)["data"][0]["id"] == job["id"]


async def test_dead_letter_filters_carry_over_to_a_bulk_replay(browser: Browser) -> None:
    await browser.login()
    status, html, _ = await browser.get("/console/dead-letters?account_id=acme&type=invoice.paid"
                                        "&event_id=evt_x")
    assert status == 200
    link = re.search(r'href="([^"]+)" id="bulk-link"', html)
    assert link is not None
    target = link.group(1).replace("&amp;", "&")
    assert target == "/console/replays?account_id=acme&type=invoice.paid"  # no event id
    status, html, _ = await browser.get(target)
    assert 'name="account_id" id="bulk-account" value="acme"' in html
    assert 'name="type" value="invoice.paid"' in html


async def test_an_unexpected_error_is_a_503_page_without_details() -> None:
    async def broken(_: web.Request) -> web.Response:
        raise RuntimeError("secret internals")

    app = web.Application(middlewares=[web.middleware(web_guard)])
    app.router.add_get("/console/login", broken)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        response = await client.get("/console/login")
        html = await response.text()
    assert response.status == 503 and "internal error" in html
    assert "secret internals" not in html and "Traceback" not in html
    assert "default-src 'none'" in response.headers["Content-Security-Policy"]


async def test_event_page_replay_can_include_succeeded_deliveries(
        admin: AdminApp, browser: Browser, pool: asyncpg.Pool) -> None:
    endpoint = await insert_endpoint(pool, account_id=_account(), url=URL)
    [done] = await insert_dead_deliveries(pool, endpoint, 1, status="succeeded")
    await browser.login()
    path = f"/console/events/{done.event_id}"
    csrf = await browser.csrf_of(path)
    status, html, _ = await browser.post(f"{path}/replay", {"csrf_token": csrf, "reason": "r"})
    assert status == 200 and 'class="outcome">not_dead<' in html
    status, html, _ = await browser.post(f"{path}/replay", {
        "csrf_token": csrf, "reason": "merchant lost it", "include_succeeded": "true"})
    assert status == 200 and 'class="outcome">queued<' in html
    assert await pool.fetchval("SELECT status FROM deliveries WHERE id = $1",
                               done.delivery_id) == "pending"
    status, audit, _ = await admin.call("GET", f"/admin/v1/audit-log?target={done.event_id}")
    assert [(a["operator"], a["details"]["include_succeeded"]) for a in audit["data"]] == [
        ("admin", True), ("admin", False)]
