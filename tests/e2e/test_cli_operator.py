"""The operator CLI (``postwire dlq|events|replay|replays|audit``) as a subprocess against a
running admin service process: output, ``--json``, progress, Ctrl-C and exit statuses."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator

import aiohttp
import asyncpg
import pytest
import pytest_asyncio

from deploy.embedded.services import ServiceProcess, start_service
from tests.conftest import TEST_ADMIN_TOKEN, ServiceEnvFactory
from tests.support.seeding import SeededEndpoint, insert_dead_deliveries, insert_endpoint

pytestmark = pytest.mark.asyncio(loop_scope="session")

URL = "http://127.0.0.1:9/hook"  # never called: no dispatcher runs here


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def admin(service_env: ServiceEnvFactory,
                tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ServiceProcess]:
    log = tmp_path_factory.mktemp("cli") / "dlq_replay.log"
    service = start_service("dlq_replay", service_env(ADMIN_JOB_POLL_S="0.1"), log)
    try:
        await service.wait_healthy_async(timeout_s=60)
        yield service
    finally:
        await asyncio.to_thread(service.stop)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    created = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    yield created
    await created.close()


def _env(admin: ServiceProcess, token: str | None = TEST_ADMIN_TOKEN) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSTWIRE_")}
    env["POSTWIRE_ADMIN_URL"] = admin.base_url
    if token is not None:
        env["POSTWIRE_ADMIN_TOKEN"] = token
    return env


def cli(admin: ServiceProcess, *args: str, token: str | None = TEST_ADMIN_TOKEN,
        ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cli.main", *args], env=_env(admin, token),
                          capture_output=True, text=True, timeout=60, check=False)


async def _endpoint(pool: asyncpg.Pool) -> SeededEndpoint:
    return await insert_endpoint(pool, account_id=f"acct_{uuid.uuid4().hex[:8]}", url=URL)


async def test_dlq_list_prints_a_table_and_json(admin: ServiceProcess, pool: asyncpg.Pool) -> None:
    endpoint = await _endpoint(pool)
    made = await insert_dead_deliveries(pool, endpoint, 3, event_type="invoice.failed")
    table = cli(admin, "dlq", "list", "--endpoint", endpoint.id)
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split()[:3] == ["DEAD", "AT", "DELIVERY"]
    assert [line.split()[1] for line in lines[1:]] == [m.delivery_id for m in reversed(made)]
    assert "invoice.failed" in lines[1] and "retries_exhausted" in lines[1]
    as_json = cli(admin, "dlq", "list", "--endpoint", endpoint.id, "--limit", "2", "--json")
    assert [d["delivery_id"] for d in json.loads(as_json.stdout)] == [
        made[2].delivery_id, made[1].delivery_id]
    empty = cli(admin, "dlq", "list", "--account", "nobody_here")
    assert (empty.returncode, empty.stdout.strip()) == (0, "no dead letters match")


async def test_events_show_and_replay(admin: ServiceProcess, pool: asyncpg.Pool) -> None:
    endpoint = await _endpoint(pool)
    [made] = await insert_dead_deliveries(pool, endpoint, 1)
    shown = cli(admin, "events", "show", made.event_id)
    assert shown.returncode == 0, shown.stderr
    assert made.event_id in shown.stdout and f"delivery {made.delivery_id}" in shown.stdout
    assert "retries_exhausted" in shown.stdout
    replayed = cli(admin, "replay", made.event_id, "--reason", "fixed the TLS cert")
    assert replayed.returncode == 0, replayed.stderr
    assert "1 of 1 deliveries queued" in replayed.stdout and "queued" in replayed.stdout
    again = cli(admin, "replay", made.event_id, "--reason", "again", "--json")
    assert json.loads(again.stdout)["deliveries"][0]["outcome"] == "already_pending"
    audit = cli(admin, "audit", "--target", made.event_id)
    assert audit.returncode == 0
    assert "replay.event" in audit.stdout and "fixed the TLS cert" in audit.stdout


async def test_replays_start_follows_the_job_to_completion(
        admin: ServiceProcess, pool: asyncpg.Pool) -> None:
    endpoint = await _endpoint(pool)
    await insert_dead_deliveries(pool, endpoint, 30)
    result = cli(admin, "replays", "start", "--reason", "outage", "--endpoint", endpoint.id,
                 "--rate", "30")
    assert result.returncode == 0, result.stderr
    assert "30 dead deliveries matched" in result.stdout
    assert "100%" in result.stdout and "completed: queued 30, skipped 0 of 30" in result.stdout
    job_id = result.stdout.split()[2]
    shown = cli(admin, "replays", "show", job_id, "--json")
    assert json.loads(shown.stdout)["status"] == "completed"
    refused = cli(admin, "replays", "cancel", job_id)
    assert refused.returncode == 1 and "conflict" in refused.stderr


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


async def test_ctrl_c_leaves_the_job_running_and_cancel_stops_it(
        admin: ServiceProcess, pool: asyncpg.Pool) -> None:
    endpoint = await _endpoint(pool)
    await insert_dead_deliveries(pool, endpoint, 40)
    proc = await asyncio.to_thread(
        subprocess.Popen,
        [sys.executable, "-m", "cli.main", "replays", "start", "--reason", "slow",
         "--endpoint", endpoint.id, "--rate", "2"],
        env=_env(admin), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        # a Ctrl-C at a terminal: the suite itself may run with SIGINT ignored (a background
        # job, nohup), which the child would inherit and Python would then leave ignored
        preexec_fn=_default_sigint)
    assert proc.stdout is not None
    first_line = await asyncio.to_thread(proc.stdout.readline)
    job_id = first_line.split()[2]
    await asyncio.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    out, _ = await asyncio.to_thread(proc.communicate, timeout=30)
    assert proc.returncode == 130
    assert "keeps running" in out and f"postwire replays show {job_id}" in out
    shown = cli(admin, "replays", "show", job_id, "--json")
    assert json.loads(shown.stdout)["status"] == "running"
    cancelled = cli(admin, "replays", "cancel", job_id, "--reason", "too slow")
    assert cancelled.returncode == 0 and "cancelled" in cancelled.stdout
    audit = json.loads(cli(admin, "audit", "--target", job_id, "--json").stdout)
    assert [e["action"] for e in audit] == ["replay.bulk.cancel", "replay.bulk.start"]


@pytest.mark.parametrize(("args", "token", "code", "message"), [
    (["dlq", "list"], "wrong-token-123", 4, "authentication failed"),
    (["dlq", "list"], None, 2, "no admin token"),
    (["events", "show", "evt_01JD0000000000000000000000"], TEST_ADMIN_TOKEN, 3, "not found"),
    (["replays", "show", "rpl_nope"], TEST_ADMIN_TOKEN, 3, "not found"),
    (["replays", "start", "--reason", "x", "--rate", "0"], TEST_ADMIN_TOKEN, 1, "max_per_second"),
])
async def test_errors_have_clear_messages_and_exit_codes(
        admin: ServiceProcess, args: list[str], token: str | None, code: int,
        message: str) -> None:
    result = cli(admin, *args, token=token)
    assert result.returncode == code, (result.stdout, result.stderr)
    assert message in result.stderr and "Traceback" not in result.stderr


async def test_an_unreachable_service_exits_5(admin: ServiceProcess) -> None:
    result = cli(admin, "dlq", "list", "--url", "http://127.0.0.1:9")
    assert result.returncode == 5
    assert "cannot reach the admin service" in result.stderr


async def test_portal_link_prints_a_one_time_url(admin: ServiceProcess) -> None:
    made = cli(admin, "portal-link", "acct_cli", "--expires-in", "120")
    assert made.returncode == 0, made.stderr
    url = made.stdout.strip()
    assert url.startswith(f"{admin.base_url}/portal/start?token=")
    assert "works once" in made.stderr and "acct_cli" in made.stderr
    bad = cli(admin, "portal-link", "acct_cli", "--expires-in", "5")
    assert bad.returncode == 1 and "expires_in_s" in bad.stderr
    token = url.split("token=", 1)[1]
    async with aiohttp.ClientSession() as http:
        async with http.get(url, allow_redirects=False) as page:
            assert page.status == 200 and "acct_cli" in await page.text()
        for expected in (303, 401):  # the button's POST redeems it, once
            async with http.post(f"{admin.base_url}/portal/start", data={"token": token},
                                 allow_redirects=False) as opened:
                assert opened.status == expected
                assert ("postwire_portal" in opened.cookies) == (expected == 303)
