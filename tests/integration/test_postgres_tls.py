"""Postgres TLS is set in the DSN alone, and reaches the driver of every process.

The embedded Postgres of the test stack is built without SSL, so this cannot show an encrypted
session; it shows what the DSN's TLS parameters do: ``sslmode=prefer`` connects (plain here),
``sslmode=require`` is refused by a server without TLS, and a CA file that is not there is
refused before connecting (a service checks ``sslrootcert``/``sslcert``/``sslkey`` with its
settings). A refusal is one line, from ``postwire migrate`` and from a service at start alike
(docs/operations.md, "Postgres over TLS").
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

POSTWIRE = str(Path(sys.executable).with_name("postwire"))


def _migrate(dsn: str) -> subprocess.CompletedProcess[str]:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("POSTWIRE_")},
           "POSTWIRE_DATABASE_URL": dsn}
    return subprocess.run([POSTWIRE, "migrate"], env=env, capture_output=True, text=True,
                          timeout=120, check=False)


def test_migrate_passes_the_dsn_tls_parameters_to_the_driver(database_url: str) -> None:
    assert _migrate(f"{database_url}?sslmode=prefer").returncode == 0
    refused = _migrate(f"{database_url}?sslmode=require")
    assert refused.returncode == 1
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and "rejected SSL upgrade" in lines[0], lines


def test_services_take_tls_from_the_dsn_and_refuse_in_one_line(
        database_url: str, service_env: Any, run_service: Any, tmp_path: Path) -> None:
    prefer = run_service("ingest", service_env(DATABASE_URL=f"{database_url}?sslmode=prefer"))
    assert prefer.is_running()
    missing_ca = tmp_path / "no-such-ca.crt"
    strict = run_service("ingest", service_env(
        DATABASE_URL=f"{database_url}?sslmode=verify-full&sslrootcert={missing_ca}"),
        wait=False)
    deadline = time.monotonic() + 60
    while strict.returncode is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert strict.returncode == 2, strict.log_tail()
    errors = [line for line in strict.log_tail(50).splitlines()
              if line.startswith("postwire ingest:")]
    assert errors == [f"postwire ingest: POSTWIRE_DATABASE_URL is not valid: "
                      f"sslrootcert={missing_ca} is not a readable file"]
    assert "Traceback" not in strict.log_tail(50)
