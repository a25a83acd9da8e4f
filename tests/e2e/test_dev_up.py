"""`postwire dev up` (what `make run` runs) as a user sees it, on free ports.

It starts Postgres, the broker and all three services, prints their URLs, an API key and an
admin token that work, refuses a second run on the same state directory, and on SIGTERM stops
every child: no process is left behind.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import orjson

from deploy.embedded import procs
from deploy.embedded.ports import free_port
from tests.conftest import assert_stops_cleanly, read_until

_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _call(method: str, url: str, token: str, body: object = None) -> tuple[int, object]:
    data = orjson.dumps(body) if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers={
        "Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    try:
        with _NO_PROXY.open(request, timeout=10) as response:
            return response.status, orjson.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, orjson.loads(exc.read())


def _value(pattern: str, text: str) -> str:
    found = re.search(pattern, text, re.MULTILINE)
    assert found, f"{pattern!r} not in the banner:\n{text}"
    return found.group(1)


def test_dev_up_starts_everything_prints_working_credentials_and_stops_cleanly(
        tmp_path: Path) -> None:
    state = tmp_path / "dev"
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSTWIRE_")}
    env.update({"POSTWIRE_INGEST_PORT": str(free_port()),
                "POSTWIRE_DISPATCHER_PORT": str(free_port()),
                "POSTWIRE_ADMIN_PORT": str(free_port())})
    argv = [sys.executable, "-m", "cli.main", "dev", "up", "--dir", str(state),
            "--pg-port", str(free_port()), "--broker-port", str(free_port())]
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    try:
        banner = read_until(proc, "Ctrl-C")
        assert "Postwire dev stack is up" in banner, banner
        ingest = _value(r"ingest API\s+(http://\S+)", banner)
        admin = _value(r"admin/replay API\s+(http://\S+)", banner)
        dispatcher = _value(r"dispatcher \(health/metrics\)\s+(http://\S+)", banner)
        api_key = _value(r"API key\s+(\S+)", banner)
        admin_token = _value(r"admin token\s+(\S+)", banner)
        assert ingest.endswith(env["POSTWIRE_INGEST_PORT"])
        assert admin.endswith(env["POSTWIRE_ADMIN_PORT"])
        assert dispatcher.endswith(env["POSTWIRE_DISPATCHER_PORT"])
        assert "curl -sS -X POST " + ingest + "/v1/endpoints" in banner
        assert f"Operator console: {admin}/console" in banner
        children = procs.descendants(proc.pid)
        assert len(children) >= 5  # Postgres, broker, three services

        status, endpoint = _call("POST", ingest + "/v1/endpoints", api_key, {
            "account_id": "acct_dev", "url": "http://127.0.0.1:9/hooks"})
        assert status == 201, endpoint
        status, accepted = _call("POST", ingest + "/v1/events", api_key, {
            "account_id": "acct_dev", "type": "invoice.paid", "data": {"amount": 42}})
        assert status == 202 and isinstance(accepted, dict), accepted
        assert accepted["delivery_count"] == 1
        status, page = _call("GET", admin + "/admin/v1/dead-letters", admin_token)
        assert status == 200 and isinstance(page, dict) and "data" in page
        assert _call("GET", admin + "/admin/v1/dead-letters", api_key)[0] == 401
        assert _call("GET", ingest + "/v1/events?account_id=acct_dev", admin_token)[0] == 401
        for base in (ingest, dispatcher, admin):
            assert _call("GET", base + "/readyz", "")[0] == 200, base

        second = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60,
                                check=False)
        assert second.returncode == 1
        assert "already running" in second.stderr and f"(pid {proc.pid})" in second.stderr

        assert_stops_cleanly(proc, children, timeout_s=90)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
