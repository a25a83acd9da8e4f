"""Chaos soak: steady load through every service while processes are killed -9, then a ledger.

    .venv/bin/python -m bench.chaos [--duration 600] [--rate 20] [--fault-every 20:40] [--seed N]

``make chaos`` runs the 10-minute version; ``tests/faults/test_chaos_soak.py`` runs a 2-minute
one and asserts the ledger. Everything runs on 127.0.0.1: an embedded Postgres and Tansu broker
of its own (under a temp dir), 2 ingest, 3 dispatcher and 1 admin processes, and, in this
process, a webhook receiver and the load generator.

- Load: ``--rate`` events/s, each posted with an Idempotency-Key to one ingest (alternating)
  and retried against the other one until it gets its 202, so a kill never leaves an event
  whose acceptance is unknown. One account, four endpoints: ``/ok`` (200), ``/flaky`` (503 to
  about 10% of first attempts), ``/bad`` (400 to the first attempt of every event, so each
  dies once; bulk replays then deliver it), ``/doomed`` (503 always, deleted at 60% of the run:
  its open deliveries are cancelled). Retry schedule ``0,1,1,2,4``.
- Bulk replays: every ``--replay-every`` seconds the admin API replays the dead deliveries of
  ``/bad`` (``max_per_second`` 200).
- Faults: every ``--fault-every`` seconds (uniform in the range) one random process is killed
  with SIGKILL: an ingest, a dispatcher, the admin, the broker (restarted 1 s later, empty) or
  Postgres (restarted on its data). A service is started again at once.
- Ledger, after the load stops and every delivery is final (or ``--drain-timeout``): accepted
  events = events stored; deliveries = delivered + dead + cancelled, none open; every delivered
  one reached its endpoint; every request carried a known ``webhook-id`` and the same bytes
  on a repeat; a repeated 2xx only within ``DUPLICATE_WINDOW_S`` after a crash of a dispatcher
  or Postgres; and, per fault, the time to full recovery: from the process being back until
  every delivery to ``/ok`` and ``/flaky`` of the events accepted before the fault is final
  (``/bad`` waits for the next bulk replay and ``/doomed`` for its circuit's growing cool-off,
  up to 300 s, whatever the fault).

Exit status 0 when the ledger holds, 1 otherwise. Every process it started is stopped by PID.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import sys
import tempfile
import time
import uuid
import zlib
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
from aiohttp import web

from deploy.embedded.ports import free_port
from deploy.embedded.services import ServiceName, ServiceProcess, start_service
from deploy.embedded.stack import EmbeddedStack
from shared.adapters.pg.migrations import apply_migrations

API_KEY = "chaos-key-0001"
ADMIN_TOKEN = "chaos-admin-token-01"
ACCOUNT = "acct_chaos"
DUPLICATE_WINDOW_S = 40.0   # a repeat must follow a crash within this (timeout + lease + slack)


# --------------------------------------------------------------------------------- receiver

@dataclass
class Arrival:
    """One webhook request as the receiver saw it."""

    path: str
    webhook_id: str
    body: bytes
    status: int
    at: float


class ChaosReceiver:
    """An aiohttp receiver on 127.0.0.1 answering per path as the module docstring says."""

    def __init__(self) -> None:
        self.arrivals: list[Arrival] = []
        self._seen: set[tuple[str, str]] = set()
        self._runner: web.AppRunner | None = None
        self.port = 0

    def _status(self, path: str, webhook_id: str) -> int:
        first = (path, webhook_id) not in self._seen
        self._seen.add((path, webhook_id))
        if path == "/flaky":
            return 503 if first and zlib.crc32(webhook_id.encode()) % 10 == 0 else 200
        if path == "/bad":
            return 400 if first else 200
        if path == "/doomed":
            return 503
        return 200

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        webhook_id = request.headers.get("webhook-id", "")
        status = self._status(request.path, webhook_id)
        self.arrivals.append(Arrival(request.path, webhook_id, body, status, time.monotonic()))
        return web.Response(status=status, body=b"ok")

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = int(self._runner.addresses[0][1])

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


# --------------------------------------------------------------------------------- processes

@dataclass
class Fault:
    """One kill: what, when (monotonic), when it was back, and when everything accepted
    before it was final (None while not yet)."""

    target: str
    killed_at: float
    back_at: float = 0.0
    recovered_at: float | None = None
    accepted_before: int = 0

    @property
    def recovery_s(self) -> float | None:
        return None if self.recovered_at is None else max(0.0, self.recovered_at - self.back_at)


@dataclass
class Fleet:
    """The stack and the services of one soak; every process is ours, stopped by PID."""

    stack: EmbeddedStack
    env: dict[str, str]
    logs: Path
    services: dict[str, ServiceProcess] = field(default_factory=dict)
    envs: dict[str, dict[str, str]] = field(default_factory=dict)
    starts: int = 0

    def start(self, key: str, name: ServiceName, port_var: str) -> ServiceProcess:
        """Start (or start again, on the same port) the service known as ``key``."""
        env = self.envs.setdefault(key, {**self.env, port_var: str(free_port())})
        self.starts += 1
        service = start_service(name, env, self.logs / f"{key}-{self.starts}.log")
        self.services[key] = service
        return service

    def start_all(self) -> None:
        for i in range(2):
            self.start(f"ingest-{i}", "ingest", "POSTWIRE_INGEST_PORT")
        for i in range(3):
            self.start(f"dispatcher-{i}", "dispatcher", "POSTWIRE_DISPATCHER_PORT")
        self.start("admin", "dlq_replay", "POSTWIRE_ADMIN_PORT")
        for service in self.services.values():
            service.wait_healthy(timeout_s=90)

    def restart(self, key: str) -> None:
        name: ServiceName = ("dlq_replay" if key == "admin" else
                             "ingest" if key.startswith("ingest") else "dispatcher")
        port_var = {"ingest": "POSTWIRE_INGEST_PORT", "dispatcher": "POSTWIRE_DISPATCHER_PORT",
                    "dlq_replay": "POSTWIRE_ADMIN_PORT"}[name]
        self.start(key, name, port_var).wait_healthy(timeout_s=90)

    def kill_and_restart(self, target: str) -> None:
        """kill -9 ``target`` and bring it back (blocking; run in a thread)."""
        if target == "broker":
            self.stack.broker.kill()
            time.sleep(1.0)
            self.stack.broker.restart()
        elif target == "postgres":
            self.stack.postgres.kill()
            self.stack.postgres.restart()
        else:
            self.services[target].kill()
            self.restart(target)

    def base_url(self, key: str) -> str:
        return self.services[key].base_url

    def stop(self) -> None:
        for service in self.services.values():
            with contextlib.suppress(Exception):
                service.stop(timeout_s=20)
        self.stack.stop()


# --------------------------------------------------------------------------------- the soak

@dataclass
class Options:
    duration_s: float = 600.0
    rate: float = 20.0
    fault_min_s: float = 20.0
    fault_max_s: float = 40.0
    replay_every_s: float = 15.0
    drain_timeout_s: float = 180.0
    seed: int | None = None
    targets: tuple[str, ...] = ("ingest-0", "ingest-1", "dispatcher-0", "dispatcher-1",
                                "dispatcher-2", "admin", "broker", "postgres")
    order: tuple[str, ...] = ()   # kill these in turn (cycling) instead of at random


@dataclass
class Ledger:
    """What the soak counted and checked; ``failures`` empty means the ledger holds."""

    accepted: int = 0
    stored_events: int = 0
    deliveries: dict[str, int] = field(default_factory=dict)
    requests: int = 0
    duplicates: int = 0
    duplicates_explained: int = 0
    replays_started: int = 0
    faults: list[Fault] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failures

    def table(self) -> str:
        d = self.deliveries
        total = sum(d.values())
        lines = [
            "chaos soak ledger",
            f"  run                      {self.elapsed_s:8.0f} s, {len(self.faults)} faults, "
            f"{self.replays_started} bulk replays",
            f"  events accepted (202)    {self.accepted:8d}   stored {self.stored_events}",
            f"  deliveries               {total:8d}   = delivered {d.get('succeeded', 0)}"
            f" + dead {d.get('dead', 0)} + cancelled {d.get('cancelled', 0)}"
            f" (open {d.get('pending', 0) + d.get('retrying', 0)})",
            f"  webhook requests         {self.requests:8d}   repeated 2xx {self.duplicates}"
            f" (after a crash, same webhook-id and bytes: {self.duplicates_explained})",
            "  faults (kill -9)         target        at s   back after s   full recovery s",
        ]
        start = self.faults[0].killed_at - 1 if self.faults else 0.0
        for f in self.faults:
            rec = f"{f.recovery_s:.1f}" if f.recovery_s is not None else "NOT RECOVERED"
            lines.append(f"                           {f.target:<12} {f.killed_at - start:6.0f}"
                         f"   {f.back_at - f.killed_at:12.1f}   {rec:>15}")
        lines.append("  verdict                  " + ("PASS" if self.ok else "FAIL"))
        lines.extend(f"    - {failure}" for failure in self.failures)
        return "\n".join(lines)


class Soak:
    """One chaos soak run (see the module docstring)."""

    def __init__(self, fleet: Fleet, receiver: ChaosReceiver, opts: Options) -> None:
        self.fleet = fleet
        self.rx = receiver
        self.opts = opts
        self.rng = random.Random(opts.seed)
        self.accepted: dict[str, float] = {}       # event id -> monotonic time of its 202
        self.faults: list[Fault] = []
        self.replays = 0
        self.doomed_id = ""
        self.healthy: list[str] = []   # endpoints that end up answering 2xx (/ok, /flaky)
        self.refusals: Counter[str] = Counter()   # non-202 answers to event posts, retried
        self.watch_errors: Counter[str] = Counter()  # failed recovery polls (Postgres down)
        self._stop = asyncio.Event()
        self._dsn = fleet.env["POSTWIRE_DATABASE_URL"]

    # -- load ------------------------------------------------------------------------------

    async def _post(self, http: aiohttp.ClientSession, n: int) -> None:
        key = f"chaos-{uuid.uuid4().hex}"
        body = {"account_id": ACCOUNT, "type": "order.paid", "data": {"n": n}}
        deadline = time.monotonic() + 120.0
        attempt = n
        while time.monotonic() < deadline:
            url = self.fleet.base_url(f"ingest-{attempt % 2}") + "/v1/events"
            attempt += 1
            try:
                async with http.post(url, json=body, headers={
                        "Idempotency-Key": key, "Authorization": f"Bearer {API_KEY}"},
                                     timeout=aiohttp.ClientTimeout(total=10)) as resp:
                    if resp.status == 202:
                        self.accepted[(await resp.json())["id"]] = time.monotonic()
                        return
                    self.refusals[f"{resp.status} {(await resp.text())[:120]}"] += 1
            except (aiohttp.ClientError, TimeoutError, KeyError) as exc:
                self.refusals[type(exc).__name__] += 1
            await asyncio.sleep(0.2)
        raise RuntimeError(f"event {n} not accepted within 120 s of retries; answers so far: "
                           f"{self.refusals.most_common(5)}")

    async def _load(self, http: aiohttp.ClientSession) -> None:
        posts: set[asyncio.Task[None]] = set()
        start = time.monotonic()
        n = 0
        while not self._stop.is_set():
            delay = start + n / self.opts.rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.create_task(self._post(http, n))
            posts.add(task)
            task.add_done_callback(posts.discard)
            n += 1
        await asyncio.gather(*posts)

    # -- operator activity -----------------------------------------------------------------

    async def _admin(self, http: aiohttp.ClientSession, method: str, path: str,
                     body: dict[str, Any] | None = None) -> int:
        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        try:
            async with http.request(method, self.fleet.base_url("admin") + path, json=body,
                                    headers=headers,
                                    timeout=aiohttp.ClientTimeout(total=10)) as resp:
                return resp.status
        except (aiohttp.ClientError, TimeoutError):
            return 0

    async def _replays(self, http: aiohttp.ClientSession, bad_id: str) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.opts.replay_every_s)
            status = await self._admin(http, "POST", "/admin/v1/replays", {
                "reason": "chaos soak: receiver fixed",
                "filter": {"endpoint_id": bad_id}, "max_per_second": 200})
            if status == 202:
                self.replays += 1

    async def _delete_doomed(self, http: aiohttp.ClientSession) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), self.opts.duration_s * 0.6)
        for _ in range(60):
            for ingest in ("ingest-0", "ingest-1"):
                url = f"{self.fleet.base_url(ingest)}/v1/endpoints/{self.doomed_id}"
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    async with http.delete(url, headers={"Authorization": f"Bearer {API_KEY}"},
                                           timeout=aiohttp.ClientTimeout(total=10)) as resp:
                        if resp.status in (200, 204, 404):
                            return
            await asyncio.sleep(1.0)

    # -- faults and recovery ---------------------------------------------------------------


    async def _faults(self) -> None:
        while True:
            wait = self.rng.uniform(self.opts.fault_min_s, self.opts.fault_max_s)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), wait)
            if self._stop.is_set():
                return
            if self.opts.order:
                target = self.opts.order[len(self.faults) % len(self.opts.order)]
            else:
                target = self.rng.choice(self.opts.targets)
            fault = Fault(target, time.monotonic(), accepted_before=len(self.accepted))
            self.faults.append(fault)
            print(f"  fault: kill -9 {target}", flush=True)
            await asyncio.to_thread(self.fleet.kill_and_restart, target)
            fault.back_at = time.monotonic()

    async def _open_before(self, conn: asyncpg.Connection, ids: list[str],
                           endpoint_ids: list[str] | None = None) -> int:
        """Open deliveries of the events ``ids`` (to ``endpoint_ids`` only, when given)."""
        return int(await conn.fetchval(
            "SELECT count(*) FROM deliveries WHERE event_id = ANY($1)"
            " AND status IN ('pending', 'retrying')"
            " AND ($2::text[] IS NULL OR endpoint_id = ANY($2))", ids, endpoint_ids))

    async def _watch_recovery(self) -> None:
        """Mark each fault recovered once every delivery of the events accepted before it is
        final (polled every 0.5 s; Postgres may be down meanwhile)."""
        while True:
            pending = [f for f in self.faults if f.recovered_at is None and f.back_at]
            if pending:
                try:
                    async with asyncio.timeout(5):
                        conn = await asyncpg.connect(self._dsn)
                        try:
                            for fault in pending:
                                ids = [e for e, at in self.accepted.items()
                                       if at <= fault.killed_at]
                                if await self._open_before(conn, ids, self.healthy) == 0:
                                    fault.recovered_at = time.monotonic()
                        finally:
                            await conn.close()
                except Exception as exc:  # Postgres down or restarting: poll again
                    self.watch_errors[type(exc).__name__] += 1
            if self._stop.is_set() and not pending:
                return
            await asyncio.sleep(0.5)

    # -- run and ledger --------------------------------------------------------------------

    async def _create_endpoints(self, http: aiohttp.ClientSession) -> dict[str, str]:
        ids: dict[str, str] = {}
        for path in ("/ok", "/flaky", "/bad", "/doomed"):
            async with http.post(self.fleet.base_url("ingest-0") + "/v1/endpoints", json={
                    "account_id": ACCOUNT, "url": self.rx.url(path), "event_types": ["*"]},
                    headers={"Authorization": f"Bearer {API_KEY}"}) as resp:
                if resp.status != 201:
                    raise RuntimeError(f"endpoint {path}: {resp.status} {await resp.text()}")
                ids[path] = (await resp.json())["id"]
        return ids

    async def run(self) -> Ledger:
        started = time.monotonic()
        async with aiohttp.ClientSession() as http:
            endpoints = await self._create_endpoints(http)
            self.doomed_id = endpoints["/doomed"]
            self.healthy = [endpoints["/ok"], endpoints["/flaky"]]
            watcher = asyncio.create_task(self._watch_recovery())
            side = [asyncio.create_task(self._faults()),
                    asyncio.create_task(self._replays(http, endpoints["/bad"])),
                    asyncio.create_task(self._delete_doomed(http))]
            load = asyncio.create_task(self._load(http))
            await asyncio.sleep(self.opts.duration_s)
            self._stop.set()
            await load
            await asyncio.gather(*side)
            await self._drain(http)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(watcher, 30)
            watcher.cancel()
            ledger = await self._ledger({v: k for k, v in endpoints.items()})
        ledger.elapsed_s = time.monotonic() - started
        return ledger

    async def _drain(self, http: aiohttp.ClientSession) -> None:
        deadline = time.monotonic() + self.opts.drain_timeout_s
        while time.monotonic() < deadline:
            with contextlib.suppress(Exception):  # Postgres still restarting: poll again
                conn = await asyncpg.connect(self._dsn, timeout=5)
                try:
                    if await self._open_before(conn, list(self.accepted)) == 0:
                        return
                finally:
                    await conn.close()
            await asyncio.sleep(1.0)
        print("  drain timed out; dispatcher gauges:", flush=True)
        for key in ("dispatcher-0", "dispatcher-1", "dispatcher-2"):
            print(f"    {key}: {await self._gauges(http, key)}", flush=True)

    async def _gauges(self, http: aiohttp.ClientSession, key: str) -> dict[str, float]:
        wanted = ("postwire_waiting_messages", "postwire_consumer_lag_broker",
                  "postwire_unannounced_deliveries", "postwire_in_flight",
                  "postwire_assigned_partitions", "postwire_outbox_backlog")
        out: dict[str, float] = {}
        with contextlib.suppress(aiohttp.ClientError, TimeoutError):
            async with http.get(self.fleet.base_url(key) + "/metrics",
                                timeout=aiohttp.ClientTimeout(total=5)) as resp:
                for line in (await resp.text()).splitlines():
                    name = line.split(" ")[0]
                    if name in wanted:
                        out[name.removeprefix("postwire_")] = float(line.rsplit(" ", 1)[1])
        return out

    async def _ledger(self, path_of_endpoint: dict[str, str]) -> Ledger:
        ledger = Ledger(accepted=len(self.accepted), faults=self.faults,
                        replays_started=self.replays, requests=len(self.rx.arrivals))
        conn = await asyncpg.connect(self._dsn)
        try:
            ledger.stored_events = int(await conn.fetchval(
                "SELECT count(*) FROM events WHERE account_id = $1", ACCOUNT))
            rows = await conn.fetch(
                "SELECT d.event_id, d.endpoint_id, d.status, e.body FROM deliveries d"
                " JOIN events e ON e.id = d.event_id WHERE d.account_id = $1", ACCOUNT)
        finally:
            await conn.close()
        ledger.deliveries = dict(Counter(r["status"] for r in rows))
        self._check(ledger, rows, path_of_endpoint)
        return ledger

    def _check(self, ledger: Ledger, rows: list[asyncpg.Record],
               path_of_endpoint: dict[str, str]) -> None:
        fail = ledger.failures.append
        if ledger.stored_events != ledger.accepted or set(
                r["event_id"] for r in rows) - set(self.accepted):
            fail(f"{ledger.accepted} events accepted but {ledger.stored_events} stored")
        open_count = sum(1 for r in rows if r["status"] in ("pending", "retrying"))
        if open_count:
            fail(f"{open_count} deliveries still open after the drain")
        successes: dict[tuple[str, str], list[Arrival]] = defaultdict(list)
        bodies: dict[str, set[bytes]] = defaultdict(set)
        for a in self.rx.arrivals:
            bodies[a.webhook_id].add(a.body)
            if 200 <= a.status < 300:
                successes[(a.path, a.webhook_id)].append(a)
        unknown = set(bodies) - set(self.accepted)
        if unknown:
            fail(f"{len(unknown)} webhook-ids the producer never had accepted")
        if any(len(b) > 1 for b in bodies.values()):
            fail("a repeated webhook carried other bytes")
        for r in rows:
            path = path_of_endpoint[r["endpoint_id"]]
            if r["status"] == "succeeded" and not successes.get((path, r["event_id"])):
                fail(f"delivery of {r['event_id']} to {path} succeeded but never arrived")
                break
        crashes = [f.killed_at for f in self.faults
                   if f.target.startswith("dispatcher") or f.target == "postgres"]
        for arrivals in successes.values():
            for later in arrivals[1:]:
                ledger.duplicates += 1
                if any(arrivals[0].at - DUPLICATE_WINDOW_S <= at <= later.at for at in crashes):
                    ledger.duplicates_explained += 1
        if ledger.duplicates != ledger.duplicates_explained:
            fail(f"{ledger.duplicates - ledger.duplicates_explained} repeated deliveries "
                 "with no crash before them")
        for fault in self.faults:
            if fault.recovered_at is None:
                fail(f"no full recovery after the kill of {fault.target} (failed polls: "
                     f"{dict(self.watch_errors)})")


async def run_soak(base_dir: Path, opts: Options) -> Ledger:
    """Start everything under ``base_dir``, run the soak, stop everything; return the ledger."""
    stack = EmbeddedStack(base_dir=base_dir)
    stack.start()
    try:
        stack.postgres.create_database("chaos")
        dsn = stack.postgres.dsn_for("chaos")
        await apply_migrations(dsn)
        env = {
            "POSTWIRE_DATABASE_URL": dsn, "POSTWIRE_KAFKA_BOOTSTRAP": stack.kafka_bootstrap,
            "POSTWIRE_TOPIC_PREFIX": "chaos.", "POSTWIRE_API_KEYS": API_KEY,
            "POSTWIRE_ADMIN_TOKENS": f"chaos:{ADMIN_TOKEN}", "POSTWIRE_HOST": "127.0.0.1",
            "POSTWIRE_ALLOW_PRIVATE_TARGETS": "true", "POSTWIRE_RETRY_SCHEDULE": "0,1,1,2,4",
            "POSTWIRE_DELIVERY_TIMEOUT_S": "5", "POSTWIRE_KAFKA_SESSION_TIMEOUT_MS": "6000",
            "POSTWIRE_DB_POOL_SIZE": "5",
        }
        fleet = Fleet(stack, env, base_dir / "logs")
        receiver = ChaosReceiver()
        await receiver.start()
        try:
            await asyncio.to_thread(fleet.start_all)
            return await Soak(fleet, receiver, opts).run()
        finally:
            await receiver.stop()
            await asyncio.to_thread(fleet.stop)
    finally:
        stack.stop()


def parse_args(argv: list[str]) -> tuple[Options, Path | None]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=600.0, help="seconds of load")
    parser.add_argument("--rate", type=float, default=20.0, help="events per second")
    parser.add_argument("--fault-every", default="20:40", help="MIN:MAX seconds between kills")
    parser.add_argument("--replay-every", type=float, default=15.0)
    parser.add_argument("--drain-timeout", type=float, default=180.0)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--dir", type=Path, default=None, help="keep state and logs here")
    parser.add_argument("--targets", default=",".join(Options.targets),
                        help="comma-separated processes the scheduler may kill")
    args = parser.parse_args(argv)
    low, _, high = args.fault_every.partition(":")
    opts = Options(duration_s=args.duration, rate=args.rate, fault_min_s=float(low),
                   fault_max_s=float(high or low), replay_every_s=args.replay_every,
                   drain_timeout_s=args.drain_timeout, seed=args.seed,
                   targets=tuple(t for t in args.targets.split(",") if t))
    return opts, args.dir


def main(argv: list[str] | None = None) -> int:
    opts, keep = parse_args(sys.argv[1:] if argv is None else argv)
    base = keep or Path(tempfile.mkdtemp(prefix="postwire-chaos-"))
    print(f"chaos soak: {opts.duration_s:.0f} s at {opts.rate:g} events/s, a kill every "
          f"{opts.fault_min_s:g}-{opts.fault_max_s:g} s; state and logs in {base}", flush=True)
    ledger = asyncio.run(run_soak(base, opts))
    print(ledger.table(), flush=True)
    return 0 if ledger.ok else 1


if __name__ == "__main__":
    sys.exit(main())
