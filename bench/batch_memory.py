"""Ingest memory under the largest batches, as a table. A benchmark, not a test.

    .venv/bin/python -m bench.batch_memory [--events 500] [--concurrent 3]

Starts an embedded Postgres and broker, then, for each in-flight body budget
(``POSTWIRE_HTTP_MAX_INFLIGHT_BODY_BYTES``: the default 64 MiB, and 64 GiB, i.e. no bound),
one ingest process, and posts ``--events`` events whose ``data`` is just under the 256 KiB
payload limit (131 MB per batch by default): first one batch alone, then ``--concurrent``
batches at once. The ingest process's resident memory is sampled every 10 ms; the table shows
what it was before, its peak during each phase, and the statuses answered (429 is the budget
refusing a batch while another one is being read).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import aiohttp
import orjson

from deploy.embedded.ports import free_port
from deploy.embedded.services import ServiceProcess, start_service
from deploy.embedded.stack import EmbeddedStack
from shared.adapters.pg.migrations import apply_migrations

API_KEY = "bench-key-0001"
MAX_DATA = 262_144


def rss_mb(pid: int) -> float:
    """Resident set size of ``pid`` in MB (0 when it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


class PeakSampler:
    """Samples a process's RSS every 10 ms in a thread; ``peak`` is the highest seen."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_mb(self.pid))
            time.sleep(0.01)

    def __enter__(self) -> PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def batch_body(events: int, tag: str) -> bytes:
    blob = "x" * (MAX_DATA - 64)
    return orjson.dumps({"events": [{"account_id": "acct_mem", "type": f"mem.{tag}",
                                     "data": {"b": blob}} for _ in range(events)]})


async def post_all(base_url: str, bodies: list[bytes]) -> Counter[int]:
    headers = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}
    timeout = aiohttp.ClientTimeout(total=600)
    async with aiohttp.ClientSession(headers=headers, timeout=timeout) as http:
        async def one(body: bytes) -> int:
            async with http.post(f"{base_url}/v1/events/batch", data=body) as resp:
                await resp.read()
                return resp.status
        return Counter(await asyncio.gather(*(one(b) for b in bodies)))


def measure(service: ServiceProcess, bodies: list[bytes]) -> tuple[float, Counter[int]]:
    with PeakSampler(service.pid) as sampler:
        statuses = asyncio.run(post_all(service.base_url, bodies))
    return sampler.peak, statuses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=500)
    parser.add_argument("--concurrent", type=int, default=3)
    opts = parser.parse_args()
    one = batch_body(opts.events, "one")
    many = [batch_body(opts.events, f"c{i}") for i in range(opts.concurrent)]
    print(f"batch body: {len(one) / 1e6:.0f} MB ({opts.events} events of ~256 KiB)")
    rows: list[tuple[str, str, float, float, str]] = []
    with tempfile.TemporaryDirectory(prefix="postwire-bench-") as tmp, \
            EmbeddedStack(base_dir=Path(tmp)) as stack:
        stack.postgres.create_database("bench")
        dsn = stack.postgres.dsn_for("bench")
        asyncio.run(apply_migrations(dsn))
        for label, budget in (("64 MiB (default)", None), ("64 GiB (unbounded)", "68719476736")):
            env = {"POSTWIRE_DATABASE_URL": dsn, "POSTWIRE_KAFKA_BOOTSTRAP": stack.kafka_bootstrap,
                   "POSTWIRE_TOPIC_PREFIX": "bench.", "POSTWIRE_API_KEYS": API_KEY,
                   "POSTWIRE_INGEST_PORT": str(free_port())}
            if budget is not None:
                env["POSTWIRE_HTTP_MAX_INFLIGHT_BODY_BYTES"] = budget
            service = start_service("ingest", env, Path(tmp) / f"ingest-{len(rows)}.log")
            try:
                service.wait_healthy(timeout_s=60)
                before = rss_mb(service.pid)
                peak, alone = measure(service, [one])
                rows.append((label, "1 batch", before, peak, repr(dict(alone))))
                before = rss_mb(service.pid)
                peak, together = measure(service, many)
                rows.append((label, f"{opts.concurrent} concurrent", before, peak,
                             repr(dict(together))))
            finally:
                service.stop()
    print(f"{'in-flight body budget':<20} {'phase':<14} {'RSS before':>11} {'peak RSS':>9}  "
          "statuses")
    for label, phase, before, peak, answered in rows:
        print(f"{label:<20} {phase:<14} {before:>8.0f} MB {peak:>6.0f} MB  {answered}")


if __name__ == "__main__":
    main()
