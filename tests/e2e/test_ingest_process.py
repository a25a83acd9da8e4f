"""The ingest service as a real process (``python -m services.ingest``).

It accepts events over HTTP, refuses a bad setting at start with exit status 2 and one line
naming the variable, and on SIGTERM finishes what it accepted and exits 0: every event it
answered 202 is in Postgres.
"""

from __future__ import annotations

import asyncio
import os
import signal

import aiohttp
import asyncpg
import pytest

from deploy.embedded.services import start_service
from tests.conftest import TEST_API_KEY, RunService, ServiceEnvFactory

AUTH = {"Authorization": f"Bearer {TEST_API_KEY}"}


def _event(account: str, n: int = 0) -> dict[str, object]:
    return {"account_id": account, "type": "e2e.test", "data": {"n": n}}


async def test_accepts_events_and_stops_cleanly_on_sigterm(
        run_service: RunService, database_url: str) -> None:
    service = run_service("ingest", wait=False)
    await service.wait_healthy_async(timeout_s=60)
    async with aiohttp.ClientSession(service.base_url, headers=AUTH) as http:
        async with http.post("/v1/events", json=_event("e2e_one"),
                             headers={"Idempotency-Key": "once"}) as resp:
            assert resp.status == 202, await resp.text()
            created = await resp.json()
        async with http.get(f"/v1/events/{created['id']}") as resp:
            assert resp.status == 200 and (await resp.json())["data"] == {"n": 0}
        async with http.get("/readyz") as resp:
            assert resp.status == 200, await resp.text()
    assert await asyncio.to_thread(service.stop, 20.0) == 0
    log = service.log_path.read_text()
    assert "Traceback" not in log and '"level":"error"' not in log


@pytest.mark.parametrize(("variable", "value"), [
    ("MAX_PAYLOAD_BYTES", "lots"), ("INGEST_BATCH_MAX_WAIT_MS", "-1"),
    ("INGEST_PORT", "70000"), ("API_KEYS", None), ("DATABASE_URL", "mysql://x"),
])
async def test_a_bad_setting_exits_2_with_one_line_naming_it(
        service_env: ServiceEnvFactory, tmp_path: os.PathLike[str], variable: str,
        value: str | None) -> None:
    log_path = tmp_path / "ingest.log"  # type: ignore[operator]
    service = start_service("ingest", service_env(**{variable: value}), log_path)
    try:
        returncode = await asyncio.to_thread(service.popen.wait, 60)
    finally:
        service.kill()
    lines = [line for line in log_path.read_text().splitlines()
             if line.strip() and not line.startswith("--- ")]  # the spawner's start marker
    assert returncode == 2
    assert len(lines) == 1 and f"POSTWIRE_{variable}" in lines[0], lines


async def _post_all(base_url: str, account: str, count: int,
                    started: asyncio.Event) -> list[tuple[int, str | None]]:
    """POST ``count`` events, 16 at a time; (status, event id) per request, 0 if refused."""
    gate = asyncio.Semaphore(16)

    async def one(http: aiohttp.ClientSession, n: int) -> tuple[int, str | None]:
        async with gate:
            if n == count // 4:
                started.set()
            try:
                async with http.post("/v1/events", json=_event(account, n)) as resp:
                    body = await resp.json() if resp.status == 202 else None
                    return resp.status, body["id"] if body else None
            except aiohttp.ClientError:
                return 0, None

    async with aiohttp.ClientSession(base_url, headers=AUTH) as http:
        return await asyncio.gather(*(one(http, n) for n in range(count)))


async def test_sigterm_loses_nothing_it_accepted(
        run_service: RunService, database_url: str) -> None:
    service = run_service("ingest", wait=False)
    await service.wait_healthy_async(timeout_s=60)
    started = asyncio.Event()
    load = asyncio.create_task(_post_all(service.base_url, "e2e_drain", 600, started))
    await started.wait()
    os.kill(service.pid, signal.SIGTERM)
    results = await load
    assert await asyncio.to_thread(service.popen.wait, 30) == 0
    accepted = {event_id for status, event_id in results if status == 202}
    assert accepted and {status for status, _ in results} <= {0, 202, 503}
    conn = await asyncpg.connect(database_url)
    try:
        stored = {r["id"] for r in await conn.fetch(
            "SELECT id FROM events WHERE account_id = 'e2e_drain'")}
    finally:
        await conn.close()
    assert accepted <= stored
