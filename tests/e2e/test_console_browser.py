"""The operator console and the merchant portal in a real headless Chromium (Debian's
``chromium``, driven by Playwright), against the real admin service, dispatcher and ingest as
processes on the embedded Postgres and broker, delivering to a receiver on 127.0.0.1.

Screenshots of the main pages go to ``.artifacts/screenshots/`` (git-ignored)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import orjson
import pytest
import pytest_asyncio
from playwright.async_api import Browser, Page, async_playwright, expect
from standardwebhooks.webhooks import Webhook

from deploy.embedded.services import ServiceName, ServiceProcess, start_service
from shared.core.ids import new_id
from shared.core.timefmt import utcnow
from tests.conftest import TEST_ADMIN_TOKEN, ServiceEnvFactory
from tests.support.receiver import Receiver
from tests.support.seeding import insert_dead_deliveries, insert_endpoint

pytestmark = pytest.mark.asyncio(loop_scope="session")
expect.set_options(timeout=15_000)  # the machine may be busy; every wait below is bounded

HOOK = "/hook"  # the receiver path every endpoint of this module posts to
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
SCREENSHOTS = Path(__file__).resolve().parents[2] / ".artifacts" / "screenshots"
XSS_SCRIPT = "<script>window.__pwned = 1</script>"
XSS_IMG = "<img src=x onerror=\"window.__pwned = 2\">"
ADMIN = {"Authorization": f"Bearer {TEST_ADMIN_TOKEN}"}


@dataclass
class Live:
    admin: ServiceProcess
    pool: asyncpg.Pool
    browser: Browser
    receiver: Receiver

    @property
    def base(self) -> str:
        return self.admin.base_url

    async def portal_link(self, account_id: str) -> str:
        async with aiohttp.ClientSession() as http, http.post(
                f"{self.base}/admin/v1/portal-sessions", headers=ADMIN,
                json={"account_id": account_id, "expires_in_s": 900}) as resp:
            assert resp.status == 201
            return str((await resp.json())["url"])


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def live(service_env: ServiceEnvFactory, database_url: str,
               tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Live]:
    env = service_env(RETRY_SCHEDULE="0,1", CIRCUIT_FAILURE_THRESHOLD="1000",
                      CONSOLE_LAG_INTERVAL_S="1")
    logs = tmp_path_factory.mktemp("console-browser")
    names: tuple[ServiceName, ...] = ("dispatcher", "dlq_replay")
    started = [start_service(name, env, logs / f"{name}.log") for name in names]
    receiver = await Receiver().start()
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=4)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    try:
        for service in started:
            await service.wait_healthy_async(timeout_s=60)
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=CHROMIUM,
                                                       args=CHROMIUM_ARGS)
            try:
                yield Live(started[1], pool, browser, receiver)
            finally:
                await browser.close()
    finally:
        await pool.close()
        await receiver.stop()
        for service in started:
            await asyncio.to_thread(service.stop)


@pytest_asyncio.fixture(loop_scope="session")
async def page(live: Live) -> AsyncIterator[Page]:
    context = await live.browser.new_context(viewport={"width": 1360, "height": 900})
    opened = await context.new_page()
    yield opened
    await context.close()


async def _login(live: Live, page: Page) -> None:
    await page.goto(f"{live.base}/console")
    assert "/console/login" in page.url
    await page.fill("#token", TEST_ADMIN_TOKEN)
    await page.click("#sign-in")
    await expect(page.locator("#operator")).to_have_text("admin")


def _account() -> str:
    return f"acct_{uuid.uuid4().hex[:8]}"


async def _reload_until(page: Page, selector: str, text: str, timeout_s: float = 30.0) -> None:
    async with asyncio.timeout(timeout_s):
        while text not in await page.inner_text(selector):
            await asyncio.sleep(0.3)
            await page.reload()


async def test_log_in_find_a_dead_letter_by_event_id_and_replay_it(
        live: Live, page: Page) -> None:
    endpoint = await insert_endpoint(live.pool, account_id=_account(),
                                     url=live.receiver.url(HOOK))
    [dead, *_] = await insert_dead_deliveries(live.pool, endpoint, 3)
    await _login(live, page)
    await page.goto(f"{live.base}/console/dead-letters")
    await page.fill("#dl-event-id", dead.event_id)
    await page.click("#dl-filter")
    rows = page.locator("#dead-letters tbody tr")
    await expect(rows).to_have_count(1)
    await expect(rows.first).to_contain_text(dead.event_id)
    await page.screenshot(path=str(SCREENSHOTS / "console-dead-letters.png"), full_page=True)
    await rows.first.locator("input.pick").check()
    await page.fill("#replay-reason", "receiver fixed (browser test)")
    await page.click("#replay-selected")
    await expect(page.locator("td.outcome")).to_have_text("queued")
    [received] = await live.receiver.wait_for_count(1)
    assert received.headers["webhook-id"] == dead.event_id and received.body == dead.body
    await page.goto(f"{live.base}/console/events/{dead.event_id}")
    await _reload_until(page, f'[data-delivery="{dead.delivery_id}"] h3', "succeeded")
    await expect(page.locator(".attempts tbody tr")).to_have_count(1)
    await page.screenshot(path=str(SCREENSHOTS / "console-event.png"), full_page=True)
    await page.goto(f"{live.base}/console/audit")
    first = page.locator("#audit tbody tr").first
    await expect(first.locator(".operator")).to_have_text("admin")
    await expect(first.locator(".action")).to_have_text("replay.event")
    await page.screenshot(path=str(SCREENSHOTS / "console-audit.png"), full_page=True)
    await page.goto(f"{live.base}/console")
    await expect(page.locator("figure.chart")).to_have_count(5)
    delivered = page.locator("dl.headline div", has_text="delivered, last hour").locator("dd")
    async with asyncio.timeout(20):  # the overview is cached for 5 s: reload until it counts
        while int((await delivered.inner_text()).replace(",", "")) < 1:
            await asyncio.sleep(1.0)
            await page.reload()
    success = page.locator("figure.chart", has_text="Success ratio")
    assert await success.locator("polyline, circle").count() >= 1  # drawn only where data is
    await page.screenshot(path=str(SCREENSHOTS / "console-overview.png"), full_page=True)
    await page.goto(f"{live.base}/console/endpoints?account_id={endpoint.account_id}")
    await page.screenshot(path=str(SCREENSHOTS / "console-endpoints.png"), full_page=True)


async def test_bulk_replay_progress_bar_reaches_100_percent_and_cancel_works(
        live: Live, page: Page) -> None:
    account = _account()
    endpoint = await insert_endpoint(live.pool, account_id=account,
                                     url=live.receiver.url(HOOK))
    await insert_dead_deliveries(live.pool, endpoint, 20)
    await _login(live, page)
    await page.goto(f"{live.base}/console/replays")
    await page.fill("#bulk-reason", "outage replay (browser test)")
    await page.fill("#bulk-account", account)
    await page.fill("#bulk-rate", "2")  # 10 s of walking: the page sees it move
    await page.click("#bulk-start")
    row = page.locator("tr.job").first
    bar = row.locator('[data-role="bar"]')
    assert await bar.get_attribute("max") == "20"
    first_value = int(await bar.evaluate("b => b.value"))
    assert first_value < 20  # it starts below 100% and the script moves it without a reload
    await expect(row.locator('[data-role="pct"]')).to_have_text("100%", timeout=30_000)
    await expect(row.locator('[data-role="status"]')).to_have_text("completed")
    assert int(await bar.evaluate("b => b.value")) == 20
    await page.screenshot(path=str(SCREENSHOTS / "console-replays.png"), full_page=True)
    # a slow one, cancelled from the page
    other = await insert_endpoint(live.pool, account_id=_account(),
                                  url=live.receiver.url(HOOK))
    await insert_dead_deliveries(live.pool, other, 20)
    await page.fill("#bulk-reason", "slow replay to cancel")
    await page.fill("#bulk-account", other.account_id)
    await page.fill("#bulk-rate", "1")
    await page.click("#bulk-start")
    row = page.locator("tr.job").first
    await row.locator('[data-role="cancel"] button').click()
    await expect(page.locator("tr.job").first.locator('[data-role="status"]')).to_have_text(
        "cancelled")


async def test_portal_rotation_gives_the_next_delivery_two_signatures(
        live: Live, page: Page) -> None:
    account = _account()
    await page.goto(await live.portal_link(account))
    await page.click("#open-portal")
    await expect(page.locator("#account")).to_have_text(account)
    await page.fill("#new-url", live.receiver.url(HOOK))
    await page.fill("#new-types", "invoice.*")
    await page.click("#add")
    old_secret = (await page.inner_text("#secret")).strip()
    assert old_secret.startswith("whsec_")
    await page.click("#back")
    await page.fill("#grace", "3600")
    await page.click("#rotate-secret")
    new_secret = (await page.inner_text("#secret")).strip()
    assert new_secret.startswith("whsec_") and new_secret != old_secret
    await page.click("#back")
    sent = len(live.receiver.requests)
    await page.click("#send-test-event")
    arrived = await live.receiver.wait_for_count(sent + 1)
    webhook = arrived[sent]
    signatures = webhook.headers["webhook-signature"].split(" ")
    assert len(signatures) == 2 and all(s.startswith("v1,") for s in signatures)
    for secret in (new_secret, old_secret):
        assert Webhook(secret).verify(webhook.body, webhook.headers)["type"] == "postwire.test"
    await _reload_until(page, "#delivery-status", "succeeded")
    await page.screenshot(path=str(SCREENSHOTS / "portal-delivery.png"), full_page=True)
    await page.click("dl.facts a")  # back to the endpoint: the test event is listed
    await expect(page.locator("#deliveries tbody tr").first).to_contain_text("postwire.test")
    await page.screenshot(path=str(SCREENSHOTS / "portal-endpoint.png"), full_page=True)


async def test_an_xss_payload_stays_inert(live: Live, page: Page) -> None:
    account = _account()
    endpoint = await insert_endpoint(live.pool, account_id=account,
                                     url=live.receiver.url(HOOK))
    event_id, delivery_id = new_id("evt"), new_id("dlv")
    now = utcnow()
    data: dict[str, Any] = {"note": XSS_SCRIPT, "name": XSS_IMG}
    body = orjson.dumps({"id": event_id, "type": "invoice.paid", "timestamp": "t",
                         "account_id": account, "data": data})
    await live.pool.execute("INSERT INTO events (id, account_id, type, body, created_at,"
                            " delivery_count) VALUES ($1, $2, 'invoice.paid', $3, $4, 1)",
                            event_id, account, body, now)
    await live.pool.execute("INSERT INTO deliveries (id, event_id, endpoint_id, account_id,"
                            " status, attempt_count, created_at, updated_at) VALUES ($1, $2, $3,"
                            " $4, 'succeeded', 1, $5, $5)", delivery_id, event_id, endpoint.id,
                            account, now)
    await live.pool.execute("INSERT INTO attempts (id, delivery_id, attempt, started_at,"
                            " duration_ms, status_code, response_excerpt) VALUES ($1, $2, 1, $3,"
                            " 9, 200, $4)", new_id("att"), delivery_id, now, XSS_IMG)
    dialogs: list[str] = []
    page.on("dialog", lambda d: dialogs.append(d.message))
    await _login(live, page)
    await page.goto(f"{live.base}/console/events/{event_id}")
    assert XSS_SCRIPT in await page.inner_text("#event-data")
    assert XSS_IMG in await page.inner_text(".attempts")
    assert await page.locator("main img").count() == 0
    assert await page.locator("main script").count() == 0
    assert await page.evaluate("window.__pwned") is None
    await page.goto(await live.portal_link(account))
    await page.click("#open-portal")
    await page.goto(f"{live.base}/portal/deliveries/{delivery_id}")
    assert XSS_SCRIPT in await page.inner_text("#payload")
    assert await page.locator("main img").count() == 0
    assert await page.evaluate("window.__pwned") is None
    assert dialogs == []


async def test_the_portal_refuses_another_accounts_ids(live: Live, page: Page) -> None:
    mine = await insert_endpoint(live.pool, account_id=_account(),
                                 url=live.receiver.url(HOOK))
    theirs = await insert_endpoint(live.pool, account_id=_account(),
                                   url=live.receiver.url(HOOK))
    [their_dead] = await insert_dead_deliveries(live.pool, theirs, 1)
    # the merchant clicks the link in an email: a navigation from another site
    link = await live.portal_link(mine.account_id)
    await page.set_content(f'<a id="mail-link" href="{link}">open your webhooks portal</a>')
    await page.click("#mail-link")
    await expect(page.locator("#link-account")).to_have_text(mine.account_id)
    await page.click("#open-portal")
    await expect(page.locator(f'[data-endpoint="{mine.id}"]')).to_have_count(1)
    await expect(page.locator(f'[data-endpoint="{theirs.id}"]')).to_have_count(0)
    await page.screenshot(path=str(SCREENSHOTS / "portal-home.png"), full_page=True)
    for path in (f"/portal/endpoints/{theirs.id}", f"/portal/deliveries/{their_dead.delivery_id}"):
        response = await page.goto(f"{live.base}{path}")
        assert response is not None and response.status == 404
        await expect(page.locator("h1")).to_contain_text("404")
