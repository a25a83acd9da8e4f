"""Producer reconciliation of millions of ids on the embedded stack, as a table. A benchmark.

    .venv/bin/python -m bench.reconcile [--ids 5000000] [--missing 0.01] [--dead 0.01]

Starts an embedded Postgres and broker and one ingest process, seeds (straight into Postgres
with ``generate_series``, not timed) one account whose events carry Idempotency-Keys
``order-00000000``..: of ``--ids`` keys, a ``--missing`` share is never accepted, a ``--dead``
share is accepted with its delivery dead (with a dead letter), the rest succeeded. It writes
every key to an NDJSON file (every 97th padded with whitespace, to exercise normalisation),
then times ``postwire reconcile FILE --json`` (a real subprocess streaming the file to
``POST /v1/reconcile``) end to end, and checks that the answer names exactly the planted
missing and dead keys. Prints wall time, the ingest process's and the CLI's peak RSS (VmHWM
and ``ru_maxrss``), CPU seconds of the ingest process, the CLI and the whole machine (the rest
is mostly Postgres), and the issue's targets with PASS or FAIL.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import orjson

from bench._common import cpu_seconds, machine_busy_seconds, memory_kib
from deploy.embedded.ports import free_port
from deploy.embedded.services import ServiceProcess, start_service
from deploy.embedded.stack import EmbeddedStack
from shared.adapters.pg.migrations import apply_migrations
from shared.core.ledger import id_time_prefix

API_KEY = "bench-reconcile-key"
ACCOUNT = "acct_bench"
ENDPOINT = "ep_01BENCH0000000000000000000"
TARGET_S = 60.0

_SEED_EVENTS = """
INSERT INTO events (id, account_id, type, body, created_at, delivery_count, idempotency_key)
SELECT 'evt_' || $1 || lpad(i::text, 16, '0'), $2, 'invoice.paid', '\\x7b7d'::bytea, now(), 1,
       'order-' || lpad(i::text, 8, '0')
  FROM generate_series(0, $3 - 1) AS i
 WHERE i % $4 <> 0
"""
_SEED_DELIVERIES = """
INSERT INTO deliveries (id, event_id, endpoint_id, account_id, status, attempt_count,
                        created_at, updated_at)
SELECT 'dlv_' || $1 || lpad(i::text, 16, '0'), 'evt_' || $1 || lpad(i::text, 16, '0'), $2,
       $3, CASE WHEN i % $5 = 1 THEN 'dead' ELSE 'succeeded' END, 1, now(), now()
  FROM generate_series(0, $4 - 1) AS i
 WHERE i % $6 <> 0
"""
_SEED_DEAD = """
INSERT INTO dead_letters (delivery_id, event_id, endpoint_id, account_id, type, reason,
                          attempt_count, last_status_code, dead_at)
SELECT id, event_id, endpoint_id, account_id, 'invoice.paid', 'retries_exhausted', 1, 500, now()
  FROM deliveries WHERE status = 'dead'
"""


def key(i: int) -> str:
    return f"order-{i:08d}"


def planted(total: int, every_missing: int, every_dead: int) -> tuple[set[str], set[str]]:
    """The keys never accepted (i % every_missing == 0) and accepted-but-dead ones."""
    missing = {key(i) for i in range(0, total, every_missing)}
    dead = {key(i) for i in range(1, total, every_dead) if i % every_missing != 0}
    return missing, dead


async def seed(dsn: str, total: int, every_missing: int, every_dead: int) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("SET synchronous_commit = off; SET maintenance_work_mem = '256MB'")
        await conn.execute(
            "INSERT INTO endpoints (id, account_id, url, event_types, secret, created_at,"
            " updated_at) VALUES ($1, $2, 'http://127.0.0.1:8999/h', ARRAY['*'],"
            " 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', now(), now())", ENDPOINT, ACCOUNT)
        prefix = id_time_prefix(datetime.now(UTC))
        await conn.execute(_SEED_EVENTS, prefix, ACCOUNT, total, every_missing)
        await conn.execute(_SEED_DELIVERIES, prefix, ENDPOINT, ACCOUNT, total, every_dead,
                           every_missing)
        await conn.execute(_SEED_DEAD)
        for table in ("events", "deliveries", "dead_letters"):
            await conn.execute(f"VACUUM ANALYZE {table}")
    finally:
        await conn.close()


def write_upload(path: Path, total: int) -> None:
    with path.open("wb") as out:
        for start in range(0, total, 100_000):
            out.write(b"".join(
                orjson.dumps(f"  {key(i)}\t" if i % 97 == 0 else key(i)) + b"\n"
                for i in range(start, min(total, start + 100_000))))


def run_cli(upload: Path, answer: Path, url: str) -> tuple[float, int, int, float]:
    """Run ``postwire reconcile``; returns (wall seconds, exit status, peak RSS KiB, CPU s)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSTWIRE_")}
    started = time.monotonic()
    with answer.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "reconcile", str(upload), "--account",
             ACCOUNT, "--json", "--url", url, "--key", API_KEY], stdout=out, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return (time.monotonic() - started, proc.returncode, int(usage.ru_maxrss),
            usage.ru_utime + usage.ru_stime)


def check_answer(answer: Path, missing: set[str], dead: set[str]) -> tuple[bool, dict[str, int]]:
    found_missing: set[str] = set()
    found_dead: set[str] = set()
    summary: dict[str, object] = {}
    with answer.open("rb") as lines:
        for line in lines:
            item = orjson.loads(line)
            if item["kind"] == "missing":
                found_missing.add(item["id"])
            elif item["kind"] == "failed":
                found_dead.add(item["id"])
            elif item["kind"] == "summary":
                summary = item
    counts = {"missing": len(found_missing), "dead": len(found_dead),
              "delivered": int(str(summary.get("events_fully_delivered", -1)))}
    return found_missing == missing and found_dead == dead, counts


def main() -> None:
    parser = argparse.ArgumentParser(description="Producer reconciliation of millions of ids.")
    parser.add_argument("--ids", type=int, default=5_000_000)
    parser.add_argument("--missing", type=float, default=0.01, help="share never accepted")
    parser.add_argument("--dead", type=float, default=0.01, help="share accepted but dead")
    opts = parser.parse_args()
    every_missing, every_dead = round(1 / opts.missing), round(1 / opts.dead)
    with tempfile.TemporaryDirectory(prefix="postwire-bench-") as tmp, \
            EmbeddedStack(base_dir=Path(tmp)) as stack:
        stack.postgres.create_database("bench")
        dsn = stack.postgres.dsn_for("bench")
        asyncio.run(apply_migrations(dsn))
        began = time.monotonic()
        asyncio.run(seed(dsn, opts.ids, every_missing, every_dead))
        upload, answer = Path(tmp) / "sent.ndjson", Path(tmp) / "answer.ndjson"
        write_upload(upload, opts.ids)
        print(f"seeded {opts.ids:,} ids in {time.monotonic() - began:.0f} s "
              f"(upload file {upload.stat().st_size / 2**20:.0f} MiB)")
        env = {"POSTWIRE_DATABASE_URL": dsn, "POSTWIRE_KAFKA_BOOTSTRAP": stack.kafka_bootstrap,
               "POSTWIRE_TOPIC_PREFIX": "bench.", "POSTWIRE_API_KEYS": API_KEY,
               "POSTWIRE_INGEST_PORT": str(free_port())}
        asyncio.run(apply_migrations(dsn))  # again: a checkout may have gained one meanwhile
        ingest: ServiceProcess = start_service("ingest", env, Path(tmp) / "ingest.log")
        try:
            ingest.wait_healthy(timeout_s=60)
            server_before = memory_kib(ingest.pid, "VmHWM")
            server_cpu, busy = cpu_seconds([ingest.pid]), machine_busy_seconds()
            wall, status, client_kib, client_cpu = run_cli(upload, answer, ingest.base_url)
            server_cpu = cpu_seconds([ingest.pid]) - server_cpu
            busy = machine_busy_seconds() - busy
            server_after = memory_kib(ingest.pid, "VmHWM")
        finally:
            ingest.stop()
        phases = [line for line in (Path(tmp) / "ingest.log").read_text().splitlines()
                  if "reconciliation answered" in line]
        exact, counts = check_answer(answer, *planted(opts.ids, every_missing, every_dead))
    print()
    print(f"{'ids':>10} {'missing':>8} {'dead':>7} {'delivered':>10} {'wall s':>7} "
          f"{'ids/s':>9} {'server peak RSS':>16} {'client peak RSS':>16} {'cpu s: server':>14} "
          f"{'client':>7} {'machine':>8}")
    print(f"{opts.ids:>10,} {counts['missing']:>8,} {counts['dead']:>7,} "
          f"{counts['delivered']:>10,} {wall:>7.1f} {opts.ids / wall:>9,.0f} "
          f"{server_after / 1024:>12.0f} MiB {client_kib / 1024:>12.0f} MiB {server_cpu:>14.1f} "
          f"{client_cpu:>7.1f} {busy:>8.1f}")
    print(f"(server peak RSS before the reconciliation: {server_before / 1024:.0f} MiB; "
          f"CLI exit status {status}: 6 = discrepancies found, as planted)")
    for line in phases:
        item = orjson.loads(line[line.index("{"):]) if "{" in line else {}
        print("server phases (s): " + ", ".join(
            f"{k.removesuffix('_s')} {item[k]}" for k in ("upload_s", "match_s", "answer_s")
            if k in item))
    print()
    print("targets")
    print(f"  reconcile {opts.ids:,} ids in under {TARGET_S:.0f} s: {wall:.1f} s "
          f"{'PASS' if wall < TARGET_S else 'FAIL'}")
    print(f"  exactly the planted missing and dead sets: {'PASS' if exact else 'FAIL'}")


if __name__ == "__main__":
    main()
