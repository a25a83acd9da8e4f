"""Retention at scale: purge time, sizes before and after, throughput during a purge.

    .venv/bin/python -m bench.retention [--deliveries 10000000] [--days 40] [--retention 30]
                                        [--phase-s 20] [--workers 8] [--seed-workers 4]

A benchmark, not a test. Starts an embedded Postgres (fsync and synchronous_commit on), applies
the migrations, and loads ``--deliveries`` deliveries spread evenly over the ``--days`` days
before today, each with its event and one attempt (bulk-loaded day by day through detached
partitions, ``--seed-workers`` days at a time). Then:

1. sizes of every table (heap, indexes) before the purge;
2. ``--workers`` connections run the services' write path on today's partitions for the rest
   of the run: a transaction inserting 20 events with their pending deliveries (ingest), one
   marking them succeeded with an attempt each (dispatcher outcome), a get-event by id (API
   read); deliveries completed per second (the first ``--phase-s`` seconds are a baseline);
3. for each day older than ``--retention`` days, oldest first: a control window of load
   without a purge, then a retention round that detaches (CONCURRENTLY) and drops exactly
   that day, ``--pause-s`` after each partition. Paired windows cancel the drift of a long run
   (today's partitions grow, autovacuum, other work on a shared machine);
4. per day: drop time and the throughput of its purge window against its control window;
   in all: the purge time, the storage freed, sizes after, and the target (throughput in the
   purge windows within 10% of the control windows).

Use a small ``--deliveries`` (e.g. 200000) for a dry run; the full 10 million need about
12 GB of disk and, on 2 cores, about 33 minutes to load (the purge itself takes a minute).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import uvloop

from deploy.embedded.ports import free_port
from deploy.embedded.postgres import EmbeddedPostgres
from shared.adapters.pg.migrations import apply_migrations
from shared.core.ids import new_id
from shared.core.retention import RetentionPolicy
from shared.retention.loop import run_locked_round
from shared.retention.seed import seed_day
from shared.retention.storage import storage_stats
from tests.support.seeding import insert_endpoint

BATCH = 20
TARGET_DROP = 0.10


@dataclass
class Load:
    """Completion times (monotonic) of deliveries finished by the load workers."""

    done: list[float] = field(default_factory=list)
    errors: int = 0

    def rate(self, start: float, end: float) -> float:
        n = sum(1 for t in self.done if start <= t < end)
        return n / max(end - start, 1e-9)


async def _worker(dsn: str, endpoint_id: str, account_id: str, load: Load,
                  stop: asyncio.Event) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        while not stop.is_set():
            events = [new_id("evt") for _ in range(BATCH)]
            deliveries = [new_id("dlv") for _ in range(BATCH)]
            attempts = [new_id("att") for _ in range(BATCH)]
            try:
                async with conn.transaction():
                    await conn.execute(
                        "INSERT INTO events (id, account_id, type, body, created_at,"
                        " delivery_count) SELECT e, $2, 'invoice.paid', '\\x7b7d', now(), 1"
                        " FROM unnest($1::text[]) e", events, account_id)
                    await conn.execute(
                        "INSERT INTO deliveries (id, event_id, endpoint_id, account_id, status,"
                        " created_at, updated_at) SELECT d, e, $3, $4, 'pending', now(), now()"
                        " FROM unnest($1::text[], $2::text[]) AS t(d, e)",
                        deliveries, events, endpoint_id, account_id)
                async with conn.transaction():
                    await conn.execute(
                        "UPDATE deliveries SET status = 'succeeded', attempt_count = 1,"
                        " last_status_code = 200, updated_at = now()"
                        " WHERE id = ANY($1::text[])", deliveries)
                    await conn.execute(
                        "INSERT INTO attempts (id, delivery_id, attempt, started_at, duration_ms,"
                        " status_code) SELECT a, d, 1, now(), 10, 200"
                        " FROM unnest($1::text[], $2::text[]) AS t(a, d)", attempts, deliveries)
                await conn.fetchrow("SELECT * FROM events WHERE id = $1", events[0])
            except asyncpg.PostgresError:
                load.errors += 1
                continue
            now = time.monotonic()
            load.done.extend([now] * BATCH)
    finally:
        await conn.close()


@dataclass
class Pair:
    """One expired day: its drop (window ``purge``) and the equal window of load just before
    it without a purge (``control``)."""

    day: str
    drop_s: float
    control: tuple[float, float]
    purge: tuple[float, float]


async def _purge_in_pairs(dsn: str, endpoint_id: str, account_id: str, args: argparse.Namespace,
                          days_ago: list[int]) -> tuple[Load, list[Pair], float]:
    """Keep the load running; for each expired day, oldest first, measure a control window and
    then a round that drops exactly that day. Paired windows cancel the drift of a long run
    (today's partitions grow; other work on the machine comes and goes). Returns the load, the
    pairs and the baseline rate of the first ``--phase-s`` seconds."""
    load, stop = Load(), asyncio.Event()
    tasks = [asyncio.create_task(_worker(dsn, endpoint_id, account_id, load, stop))
             for _ in range(args.workers)]
    pairs: list[Pair] = []
    try:
        start = time.monotonic()
        await asyncio.sleep(args.phase_s)
        baseline = load.rate(start, time.monotonic())
        window = 3 * args.pause_s + 0.5
        for n in days_ago:
            c0 = time.monotonic()
            await asyncio.sleep(window)
            p0 = time.monotonic()
            policy = RetentionPolicy(n - 1, None, None, 7)
            report = await run_locked_round(dsn, policy, pause_s=args.pause_s)
            p1 = time.monotonic()
            if report is None or len(report.dropped) != 1:
                raise RuntimeError(f"expected one day dropped, got {report}")
            pairs.append(Pair(report.dropped[0], report.drop_seconds, (c0, p0), (p0, p1)))
            window = p1 - p0
    finally:
        stop.set()
        await asyncio.gather(*tasks)
    return load, pairs, baseline


def _mb(n: int) -> str:
    return f"{n / 1e6:,.1f}"


def _sizes(title: str, stats: dict[str, object]) -> dict[str, int]:
    tables = stats["tables"]
    assert isinstance(tables, list)
    print(f"\n{title}")
    print(f"{'table':<18}{'partitions':>11}{'rows (approx)':>15}{'heap MB':>10}"
          f"{'index MB':>10}{'total MB':>10}")
    totals: dict[str, int] = {}
    for t in tables:
        print(f"{t['table']:<18}{t['partitions']:>11}{t['approx_rows']:>15,}"
              f"{_mb(t['table_bytes']):>10}{_mb(t['index_bytes']):>10}{_mb(t['total_bytes']):>10}")
        totals[t["table"]] = t["total_bytes"]
    print(f"oldest retained day: {stats['oldest_retained_day']}")
    return totals


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-retention-") as tmp:
        pg = EmbeddedPostgres(log_path=Path(tmp) / "postgres.log")
        pg.start(Path(tmp) / "data", free_port())
        try:
            await _bench(pg.dsn, args)
        finally:
            pg.stop()


async def _bench(dsn: str, args: argparse.Namespace) -> None:
    await apply_migrations(dsn)
    conn = await asyncpg.connect(dsn)
    account = "acct_bench"
    endpoint = await insert_endpoint(conn, account_id=account, url="http://127.0.0.1:9/h")
    today = datetime.now(UTC).date()
    per_day = args.deliveries // args.days
    days = [today - timedelta(days=n) for n in range(args.days, 0, -1)]
    print(f"loading {per_day * args.days:,} deliveries (+ events, attempts) over "
          f"{args.days} days ({per_day:,}/day) ...", flush=True)
    began = time.monotonic()
    queue: asyncio.Queue[object] = asyncio.Queue()
    for day in days:
        queue.put_nowait(day)

    async def seeder() -> None:
        own = await asyncpg.connect(dsn)
        try:
            while not queue.empty():
                day = queue.get_nowait()
                assert not isinstance(day, str)
                await seed_day(own, day, per_day, endpoint_id=endpoint.id,  # type: ignore[arg-type]
                               account_id=account)
        finally:
            await own.close()

    await asyncio.gather(*(seeder() for _ in range(args.seed_workers)))
    await conn.execute("ANALYZE")
    load_s = time.monotonic() - began
    print(f"loaded in {load_s:,.0f} s ({per_day * args.days / load_s:,.0f} deliveries/s)")
    policy = RetentionPolicy(args.retention, None, None, 7)
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
    before = _sizes("before the purge", await storage_stats(pool, policy))
    cutoff = today - timedelta(days=args.retention)
    expired_bytes = int(await conn.fetchval(
        "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c"
        " WHERE c.relname ~ '^(events|deliveries|attempts)_p[0-9]{8}$' AND c.relkind = 'r'"
        " AND to_date(right(c.relname, 8), 'YYYYMMDD') < $1", cutoff))
    expired = [n for n in range(args.days, 0, -1) if n > args.retention]
    load, pairs, baseline = await _purge_in_pairs(dsn, endpoint.id, account, args, expired)
    after = _sizes("after the purge", await storage_stats(pool, policy))
    await pool.close()
    await conn.close()

    print(f"\n{'day dropped':<14}{'drop s':>8}{'window s':>10}{'control/s':>11}"
          f"{'purge/s':>10}{'ratio':>8}")
    for pair in pairs:
        control, during = load.rate(*pair.control), load.rate(*pair.purge)
        print(f"{pair.day:<14}{pair.drop_s:>8.3f}{pair.purge[1] - pair.purge[0]:>10.2f}"
              f"{control:>11,.0f}{during:>10,.0f}{during / max(control, 1e-9):>8.2f}")
    drop_s = sum(p.drop_s for p in pairs)
    wall_s = sum(p.purge[1] - p.purge[0] for p in pairs)
    in_purge = sum(sum(1 for t in load.done if p.purge[0] <= t < p.purge[1]) for p in pairs)
    in_control = sum(sum(1 for t in load.done if p.control[0] <= t < p.control[1])
                     for p in pairs)
    control_s = sum(p.control[1] - p.control[0] for p in pairs)
    purge_rate, control_rate = in_purge / max(wall_s, 1e-9), in_control / max(control_s, 1e-9)
    print(f"\npurge of {len(pairs)} expired days: {drop_s:.2f} s detaching and dropping"
          f" ({drop_s / max(len(pairs), 1):.3f} s per day of 3 partitions), {wall_s:.1f} s wall"
          f" with the {args.pause_s:g} s pause after each partition")
    print(f"storage freed: {_mb(expired_bytes)} MB (the dropped partitions) of"
          f" {_mb(sum(before.values()))} MB before; after minus before:"
          f" {_mb(sum(after.values()) - sum(before.values()))} MB (the load kept writing)")
    print(f"\n{'load':<34}{'deliveries/s':>14}")
    print(f"{'first ' + format(args.phase_s, 'g') + ' s (no purge)':<34}{baseline:>14,.0f}")
    print(f"{'control windows (no purge)':<34}{control_rate:>14,.0f}")
    print(f"{'purge windows':<34}{purge_rate:>14,.0f}")
    print(f"errors: {load.errors}")
    drop = 1 - purge_rate / control_rate if control_rate else 1.0
    verdict = "PASS" if drop < TARGET_DROP and load.errors == 0 else "FAIL"
    print(f"\ntarget: throughput during the purge within {TARGET_DROP:.0%} of the same load"
          f" without one: drop {drop:+.1%} -> {verdict}")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--deliveries", type=int, default=10_000_000)
    parser.add_argument("--days", type=int, default=40)
    parser.add_argument("--retention", type=int, default=30)
    parser.add_argument("--phase-s", type=float, default=20.0)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--seed-workers", type=int, default=4)
    parser.add_argument("--pause-s", type=float, default=1.0,
                        help="pause after each dropped partition (POSTWIRE_RETENTION_DROP_PAUSE_S)")
    return parser.parse_args()


if __name__ == "__main__":
    uvloop.run(main(parse_args()))
