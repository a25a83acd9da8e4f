"""``postwire reconcile`` and ``postwire ledger`` as subprocesses against running ingest and
admin service processes; the ledger's route, its checks and its gauges."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import asyncpg
import pytest
import pytest_asyncio

from deploy.embedded.services import ServiceProcess, start_service
from shared.core.ledger import id_time_prefix
from tests.conftest import TEST_ADMIN_TOKEN, ServiceEnvFactory
from tests.support.ledger import assert_ledger_balances

pytestmark = pytest.mark.asyncio(loop_scope="session")
API_KEY = "test-key"


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def services(service_env: ServiceEnvFactory, tmp_path_factory: pytest.TempPathFactory,
                   ) -> AsyncIterator[tuple[ServiceProcess, ServiceProcess]]:
    logs = tmp_path_factory.mktemp("reconcile")
    env = service_env(LEDGER_REFRESH_S="0.2", HTTP_BODY_TIMEOUT_S="1")
    ingest = start_service("ingest", env, logs / "ingest.log")
    admin = start_service("dlq_replay", env, logs / "dlq_replay.log")
    try:
        await ingest.wait_healthy_async(timeout_s=60)
        await admin.wait_healthy_async(timeout_s=60)
        yield ingest, admin
    finally:
        await asyncio.gather(asyncio.to_thread(ingest.stop), asyncio.to_thread(admin.stop))


async def call(method: str, url: str, token: str, body: object = None) -> dict[str, object]:
    async with aiohttp.ClientSession() as http, http.request(
            method, url, json=body, headers={"Authorization": f"Bearer {token}"}) as response:
        assert response.status < 300, await response.text()
        data: dict[str, object] = await response.json()
        return data


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("POSTWIRE_")}
    return subprocess.run([sys.executable, "-m", "cli.main", *args], env={**base, **env},
                          capture_output=True, text=True, timeout=120, check=False)


def _ledger_gauges(text: str) -> dict[str, float]:
    return {line.split()[0]: float(line.split()[1]) for line in text.splitlines()
            if line.startswith("postwire_ledger_")}


async def _eventually_unbalanced(admin: ServiceProcess) -> float:
    """``postwire_ledger_unbalanced_deliveries`` once it is not 0 (refreshed every 0.2 s)."""
    value = 0.0
    async with aiohttp.ClientSession() as http:
        for _ in range(50):
            async with http.get(f"{admin.base_url}/metrics") as response:
                value = _ledger_gauges(await response.text())[
                    "postwire_ledger_unbalanced_deliveries"]
            if value:
                break
            await asyncio.sleep(0.1)
    return value


def id_at(prefix: str, at: datetime) -> str:
    return f"{prefix}_{id_time_prefix(at)}" + "".join(
        secrets.choice("0123456789ABCDEFGHJKMNPQRSTVWXYZ") for _ in range(16))


async def test_reconcile_cli_streams_a_file_and_reports(
        services: tuple[ServiceProcess, ServiceProcess], tmp_path: Path) -> None:
    ingest, _ = services
    account = f"acct_{secrets.token_hex(4)}"
    await call("POST", f"{ingest.base_url}/v1/endpoints", API_KEY,
               {"account_id": account, "url": "http://127.0.0.1:8999/hook"})
    for key in ("k-1", "k-2", "k-3"):
        await call("POST", f"{ingest.base_url}/v1/events/batch", API_KEY, {"events": [
            {"account_id": account, "type": "t.x", "data": {}, "idempotency_key": key}]})
    ids = tmp_path / "sent.csv"
    ids.write_text("idempotency_key,amount\nk-1,1\n  k-2 ,2\nk-3,3\n")
    env = {"POSTWIRE_INGEST_URL": ingest.base_url, "POSTWIRE_API_KEY": API_KEY}
    ok = cli("reconcile", str(ids), "--account", account, env=env)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.count("OPEN ") == 3 and "MISSING" not in ok.stdout
    assert "never accepted" in ok.stdout and "3 = 0 succeeded + 3 open" in ok.stdout

    missing = tmp_path / "sent.ndjson"
    missing.write_text('"k-1"\n{"id": "k-9"}\n')
    found = cli("reconcile", str(missing), "--account", account, "--json", env=env)
    assert found.returncode == 6, found.stderr
    lines = [json.loads(line) for line in found.stdout.splitlines()]
    assert [x["kind"] for x in lines] == ["missing", "open", "summary"]
    assert lines[0]["id"] == "k-9" and lines[-1]["ids_missing"] == 1

    assert cli("reconcile", str(ids), "--account", account,
               env={**env, "POSTWIRE_API_KEY": "wrong"}).returncode == 4
    assert cli("reconcile", str(ids), "--account", account,
               env={"POSTWIRE_INGEST_URL": ingest.base_url}).returncode == 2
    assert cli("reconcile", str(tmp_path / "absent"), "--account", account,
               env=env).returncode == 2


async def test_ledger_route_cli_and_gauges(services: tuple[ServiceProcess, ServiceProcess],
                                           database_url: str) -> None:
    ingest, admin = services
    account = f"acct_{secrets.token_hex(4)}"
    await call("POST", f"{ingest.base_url}/v1/endpoints", API_KEY,
               {"account_id": account, "url": "http://127.0.0.1:8999/hook"})
    await call("POST", f"{ingest.base_url}/v1/events", API_KEY,
               {"account_id": account, "type": "t.x", "data": {}})
    ledger = await call("GET", f"{admin.base_url}/admin/v1/ledger", TEST_ADMIN_TOKEN)
    assert ledger["balanced"] is True and isinstance(ledger["events_accepted"], int)
    assert ledger["events_accepted"] >= 1
    oldest = ledger["oldest_open_delivery"]
    assert isinstance(oldest, dict) and oldest["status"] == "pending"
    await assert_ledger_balances(database_url)

    env = {"POSTWIRE_ADMIN_URL": admin.base_url, "POSTWIRE_ADMIN_TOKEN": TEST_ADMIN_TOKEN}
    shown = cli("ledger", env=env)
    assert shown.returncode == 0, shown.stderr
    assert "ok   deliveries_balance" in shown.stdout and "balanced" in shown.stdout

    # plant a discrepancy two days ahead (a partition exists; no other event is there): an
    # event accepted with 2 deliveries, only one recorded, and that one dead without a letter
    day = (datetime.now(UTC) + timedelta(days=2)).replace(hour=0, minute=0, second=0,
                                                          microsecond=0)
    at = day + timedelta(hours=12)
    event_id, delivery_id = id_at("evt", at), id_at("dlv", at)
    endpoint_id = str((await call("GET", f"{ingest.base_url}/v1/endpoints?account_id="
                                  f"{account}", API_KEY))["data"][0]["id"])  # type: ignore[index]
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(
            "INSERT INTO events (id, account_id, type, body, created_at, delivery_count)"
            " VALUES ($1, $2, 't.x', '{}', $3, 2)", event_id, account, at)
        await conn.execute(
            "INSERT INTO deliveries (id, event_id, endpoint_id, account_id, status, created_at,"
            " updated_at) VALUES ($1, $2, $3, $4, 'dead', $5, $5)",
            delivery_id, event_id, endpoint_id, account, at)
    finally:
        await conn.close()
    window = ["--from", day.isoformat(), "--to", (day + timedelta(days=1)).isoformat()]
    broken = cli("ledger", *window, "--json", env=env)
    assert broken.returncode == 6, broken.stderr
    report = json.loads(broken.stdout)
    assert report["events_accepted"] == 1 and report["deliveries_created"] == 2
    assert report["deliveries_by_status"]["dead"] == 1 and not report["balanced"]
    assert [c["holds"] for c in report["checks"]] == [False, False]
    assert cli("ledger", env=env).returncode == 0, "today's window still balances"
    with pytest.raises(AssertionError, match="does not balance"):
        await assert_ledger_balances(database_url)

    async with aiohttp.ClientSession() as http, \
            http.get(f"{admin.base_url}/metrics") as response:
        text = await response.text()
    gauges = _ledger_gauges(text)
    assert gauges["postwire_ledger_window_seconds"] == 3600
    assert gauges["postwire_ledger_events_accepted"] >= 1
    # the gauges' window is open towards the future, so they see the planted discrepancy:
    # one promised delivery missing, one dead delivery without its dead letter
    assert await _eventually_unbalanced(admin) == 2
    assert gauges["postwire_ledger_oldest_open_delivery_age_seconds"] > 0
    assert 'postwire_ledger_deliveries{status="pending"}' in gauges


async def _trickle(url: str, path: str, content_type: str, parts: list[bytes]) -> int:
    async def body() -> AsyncIterator[bytes]:
        for part in parts:
            yield part
            await asyncio.sleep(0.6)
    async with aiohttp.ClientSession() as http, http.post(
            url + path, data=body(), headers={"Authorization": f"Bearer {API_KEY}",
                                              "Content-Type": content_type}) as response:
        await response.read()
        return response.status


async def test_a_reconciliation_upload_outlives_the_http_body_deadline(
        services: tuple[ServiceProcess, ServiceProcess]) -> None:
    ingest, _ = services  # POSTWIRE_HTTP_BODY_TIMEOUT_S=1 in this module
    slow = [b'"k-1"\n', b'"k-2"\n', b'"k-3"\n', b'"k-4"\n']
    assert await _trickle(ingest.base_url, "/v1/reconcile?account_id=acct_slow",
                          "application/x-ndjson", slow) == 200
    event = [b'{"account_id": "acct_slow", ', b'"type": "t.x", ', b'"data": {}}', b""]
    assert await _trickle(ingest.base_url, "/v1/events", "application/json", event) == 400
