"""Ingest throughput on the embedded stack, as a table. A benchmark, not a test.

    .venv/bin/python -m bench.ingest [--duration 10] [--ingest-procs 1] [--pool-size 10] ...

Starts an embedded Postgres (fsync and synchronous_commit on) and broker, one or more ingest
processes (``python -m services.ingest``; with ``--ingest-procs 2`` two processes on two ports,
and the load spread round-robin over them), gives each of ``--accounts`` accounts one endpoint
matching every event (so every event also writes one delivery and one outbox message, which is
then published to Kafka), and measures, each with its load generator in a separate process:

- ``single``: ``POST /v1/events`` at ``--concurrency`` (default 32) concurrent requests;
- ``batch``: ``POST /v1/events/batch`` with ``--batch-size`` events per request;
- ``ceiling``: the machine's own ceiling, single-row INSERT transactions at the same
  concurrency straight from asyncpg (one fsync each, no HTTP).

Afterwards it checks that every event answered 202 is in Postgres.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import orjson
import uvloop

from deploy.embedded.ports import free_port
from deploy.embedded.services import ServiceProcess, start_service
from deploy.embedded.stack import EmbeddedStack
from shared.adapters.pg.migrations import apply_migrations

API_KEY = "bench-key-0001"
AUTH = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}


@dataclass
class Result:
    """One load phase: completed operations, events they carried, errors, latencies (s)."""

    name: str
    ops: int
    events: int
    errors: int
    seconds: float
    latencies: list[float]
    warm_events: int

    def row(self, ceiling: float | None) -> str:
        lat = sorted(self.latencies) or [0.0]
        p50 = statistics.median(lat) * 1000
        p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000
        rate = self.events / self.seconds
        ratio = f"{rate / ceiling:6.2f}" if ceiling else "     -"
        return (f"{self.name:<28}{self.ops / self.seconds:>10.0f}{rate:>11.0f}{p50:>9.2f}"
                f"{p99:>9.2f}{self.errors:>8}{ratio:>9}")


# ----------------------------------------------------------------- load generator (child)

async def _drive(workers: int, duration_s: float,
                 op: Callable[[int], Awaitable[int]]) -> tuple[int, int, int, list[float]]:
    """Run ``op`` in ``workers`` loops for ``duration_s``; op returns its event count or -1."""
    deadline = time.perf_counter() + duration_s
    totals = [0, 0, 0]
    latencies: list[float] = []

    async def worker(index: int) -> None:
        n = index
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            done = await op(n)
            latencies.append(time.perf_counter() - start)
            n += workers
            if done < 0:
                totals[2] += 1
            else:
                totals[0] += 1
                totals[1] += done

    await asyncio.gather(*(worker(i) for i in range(workers)))
    return totals[0], totals[1], totals[2], latencies


Totals = tuple[int, int, int, list[float], int]  # ops, events, errors, latencies, warm-up events


async def _http_load(urls: list[str], bodies: list[bytes], per_body: int, workers: int,
                     duration_s: float) -> Totals:
    connector = aiohttp.TCPConnector(limit=workers * 2)
    async with aiohttp.ClientSession(connector=connector, headers=AUTH) as http:
        async def op(n: int) -> int:
            async with http.post(urls[n % len(urls)], data=bodies[n % len(bodies)]) as resp:
                await resp.read()
                return per_body if resp.status == 202 else -1
        warm = await _drive(workers, 1.0, op)  # warm-up: connections, caches, plans
        return (*await _drive(workers, duration_s, op), warm[1])


async def _pg_load(dsn: str, workers: int, duration_s: float) -> Totals:
    pool = await asyncpg.create_pool(dsn, min_size=workers, max_size=workers)
    payload = b"x" * 200

    async def op(n: int) -> int:
        async with pool.acquire() as conn:
            await conn.execute("INSERT INTO bench_ceiling (n, payload) VALUES ($1, $2)",
                               n, payload)
        return 1

    try:
        warm = await _drive(workers, 1.0, op)
        return (*await _drive(workers, duration_s, op), warm[1])
    finally:
        await pool.close()


def _child(kind: str, args: dict[str, Any], out: Any) -> None:
    """Entry point of the load process; sends its :data:`Totals` back."""
    if kind == "pg":
        out.send(uvloop.run(_pg_load(**args)))
    else:
        out.send(uvloop.run(_http_load(**args)))


def run_phase(name: str, kind: str, duration_s: float, **args: Any) -> Result:
    """Run one load phase in a fresh process and collect its result."""
    ctx = multiprocessing.get_context("spawn")
    receiver, sender = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(kind, {**args, "duration_s": duration_s}, sender))
    proc.start()
    ops, events, errors, latencies, warm_events = receiver.recv()
    proc.join()
    return Result(name, ops, events, errors, duration_s, latencies, warm_events)


# ----------------------------------------------------------------- setup (parent)

def _env(stack: EmbeddedStack, dsn: str, port: int, opts: argparse.Namespace) -> dict[str, str]:
    return {
        "POSTWIRE_DATABASE_URL": dsn, "POSTWIRE_KAFKA_BOOTSTRAP": stack.kafka_bootstrap,
        "POSTWIRE_TOPIC_PREFIX": "bench.", "POSTWIRE_API_KEYS": API_KEY,
        "POSTWIRE_ALLOW_PRIVATE_TARGETS": "true", "POSTWIRE_INGEST_PORT": str(port),
        "POSTWIRE_DB_POOL_SIZE": str(opts.pool_size),
        "POSTWIRE_INGEST_BATCH_MAX_WAIT_MS": str(opts.batch_wait_ms),
        "POSTWIRE_INGEST_BATCH_MAX_EVENTS": str(opts.batch_max_events),
    }


async def _prepare_db(stack: EmbeddedStack) -> str:
    stack.postgres.create_database("bench")
    dsn = stack.postgres.dsn_for("bench")
    await apply_migrations(dsn)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("CREATE TABLE IF NOT EXISTS bench_ceiling"
                           " (id bigserial PRIMARY KEY, n bigint, payload bytea)")
        settings = await conn.fetch("SELECT name, setting FROM pg_settings WHERE name = ANY("
                                    "ARRAY['fsync', 'synchronous_commit', 'wal_sync_method'])")
        print("postgres:", ", ".join(f"{r['name']}={r['setting']}" for r in settings))
    finally:
        await conn.close()
    return dsn


async def _create_endpoints(base_url: str, accounts: list[str]) -> None:
    async with aiohttp.ClientSession(headers=AUTH) as http:
        for account in accounts:
            body = {"account_id": account, "url": "http://127.0.0.1:9/hook"}
            async with http.post(f"{base_url}/v1/endpoints", json=body) as resp:
                assert resp.status == 201, await resp.text()


def _bodies(accounts: list[str], count: int, per_request: int) -> list[bytes]:
    """Pre-rendered request bodies: single events, or batches of ``per_request`` events."""
    def event(n: int) -> dict[str, Any]:
        return {"account_id": accounts[n % len(accounts)], "type": "invoice.paid",
                "data": {"invoice": f"in_{n}", "amount": n % 10000, "currency": "eur",
                         "lines": [{"sku": "plan-pro", "qty": 1}]}}
    if per_request == 1:
        return [orjson.dumps(event(n)) for n in range(count)]
    return [orjson.dumps({"events": [event(n * per_request + i) for i in range(per_request)]})
            for n in range(count)]


async def _group_commit_stats(base_url: str) -> str:
    async with aiohttp.ClientSession() as http, http.get(f"{base_url}/metrics") as resp:
        text = await resp.text()
    values = {line.split()[0]: float(line.split()[1]) for line in text.splitlines()
              if line.startswith("postwire_group_commit") and "bucket" not in line}
    batches = values.get("postwire_group_commit_batch_size_count", 0) or 1
    return (f"{values.get('postwire_group_commit_batch_size_sum', 0) / batches:.1f} events/commit,"
            f" {values.get('postwire_group_commit_seconds_sum', 0) / batches * 1000:.2f} ms/commit"
            f" over {batches:.0f} commits")


def _start_ingest(stack: EmbeddedStack, dsn: str, opts: argparse.Namespace,
                  logs: Path) -> list[ServiceProcess]:
    services = []
    for index in range(opts.ingest_procs):
        env = _env(stack, dsn, free_port(), opts)
        services.append(start_service("ingest", env, logs / f"ingest-{index}.log"))
    for service in services:
        service.wait_healthy(timeout_s=60)
    return services


def run(opts: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="postwire-bench-") as tmp:
        base = Path(tmp)
        with EmbeddedStack(base_dir=base) as stack:
            dsn = asyncio.run(_prepare_db(stack))
            services = _start_ingest(stack, dsn, opts, base)
            try:
                _measure(services, dsn, opts)
            finally:
                for service in services:
                    service.stop()


def _measure(services: list[ServiceProcess], dsn: str, opts: argparse.Namespace) -> None:
    accounts = [f"bench_{i}" for i in range(opts.accounts)]
    asyncio.run(_create_endpoints(services[0].base_url, accounts))
    urls = [f"{s.base_url}/v1/events" for s in services]
    single = run_phase(f"single POST, c={opts.concurrency}", "http", opts.duration, urls=urls,
                       bodies=_bodies(accounts, 2000, 1), per_body=1, workers=opts.concurrency)
    stats = [asyncio.run(_group_commit_stats(s.base_url)) for s in services]
    batch = run_phase(f"batch POST x{opts.batch_size}, c={opts.batch_concurrency}", "http",
                      opts.duration, urls=[f"{u}/batch" for u in urls],
                      bodies=_bodies(accounts, 50, opts.batch_size), per_body=opts.batch_size,
                      workers=opts.batch_concurrency)
    ceiling = run_phase(f"asyncpg 1-row tx, c={opts.concurrency}", "pg", opts.duration, dsn=dsn,
                        workers=opts.concurrency)
    stored = asyncio.run(_count_events(dsn))
    rate = ceiling.events / ceiling.seconds
    print(f"\n{'scenario':<28}{'req/s':>10}{'events/s':>11}{'p50 ms':>9}{'p99 ms':>9}"
          f"{'errors':>8}{'x ceil':>9}")
    for result in (single, batch, ceiling):
        print(result.row(rate if result is not ceiling else None))
    print(f"\ngroup commit during single POSTs: {'; '.join(stats)}")
    print(f"settings: ingest procs={opts.ingest_procs}, pool={opts.pool_size}, batch wait="
          f"{opts.batch_wait_ms} ms, batch max={opts.batch_max_events}, accounts={opts.accounts}"
          " (1 endpoint each)")
    answered = sum(r.events + r.warm_events for r in (single, batch))
    print(f"durability: {stored} events in Postgres, {answered} answered 202 (warm-ups included)")
    assert stored == answered, "events answered 202 and events stored differ"


async def _count_events(dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM events"))
    finally:
        await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per phase")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--batch-concurrency", type=int, default=4)
    parser.add_argument("--ingest-procs", type=int, default=1)
    parser.add_argument("--pool-size", type=int, default=10)
    parser.add_argument("--batch-wait-ms", type=int, default=2)
    parser.add_argument("--batch-max-events", type=int, default=500)
    parser.add_argument("--accounts", type=int, default=50)
    run(parser.parse_args())


if __name__ == "__main__":
    main()
