"""End-to-end delivery benchmark on the embedded stack, as tables. A benchmark, not a test.

    .venv/bin/python -m bench.e2e [--duration 30] [--rate 2400] [--dispatchers 1] ...

Everything runs on this machine, on 127.0.0.1: an embedded Postgres (fsync on) and Tansu
broker, the three services as processes (``ingest``, ``dispatcher`` x ``--dispatchers``,
``dlq_replay``), a receiver process (a lean asyncio HTTP/1.1 server, port 0, answers 204 and
records the arrival time of every ``webhook-id``; :mod:`bench._receiver`) and, per phase, a
load-generator process
(:mod:`bench._common`). One account gets ``--endpoints`` endpoints, endpoint *i* subscribed to
event type ``bench.t<i>`` only, so each event is delivered exactly once (deliveries = events).

Phases (``--phases`` picks a subset; they run in this order, the quiet ones first, after a
short warm-up, each after the previous one's deliveries are done or ``--drain-timeout``):

1. ``latency``: ``--latency-rate`` single-event POSTs per second for ``--latency-duration`` s
   (each event has its own 202 time, so the latency is per event, not per batch). The
   ``attempts`` rows split the latency into legs (ingest, dispatcher, HTTP); a side Kafka
   consumer, long-polling so that it does not load the broker it measures, tells which
   delivery messages went through Kafka at all (at low rates Postgres is the only transport:
   the wake-up path) and times the Kafka leg of those that did.
2. ``ceiling``: a bare aiohttp client posting a webhook-shaped body to the same receiver at
   ``--ceiling-concurrency`` for ``--ceiling-duration`` s; delivered/s is shown against it.
3. ``sustained``: events offered open-loop at ``--rate`` for ``--duration`` s as batches of
   ``--batch-size`` (the batch endpoint keeps a high rate steady with a few requests in
   flight; single POSTs at 3,000/s would make the generator the bottleneck). Reports offered,
   accepted and delivered per second (receiver side, over the window after ``--warm`` s), and
   accept-to-receive latency p50/p99 of the events accepted in that window.
4. ``backlog``: the dispatchers are stopped, ``--backlog`` events are ingested through the
   batch endpoint (500 per request), then the dispatchers start again; reports the time from
   their start to the first and last delivery, deliveries/s, and each dispatcher's peak RSS
   (VmHWM; also the largest VmRSS sampled every 0.2 s).
5. ``idle`` (run first, right after the warm-up): ``--idle-duration`` s with no traffic at
   all; reports cores and wake-ups per second (context switches of every thread, which do not
   depend on how busy the rest of the machine is) per component, and Postgres commits and WAL
   per second. An idle stack should cost next to nothing.

Every phase with deliveries prints CPU milliseconds per delivery (``stack`` = ingest,
dispatcher, admin, Postgres and broker: the processes an installation runs) and commits and
WAL per delivery. On a shared machine latency is noise, while CPU seconds (from /proc) and
commit counts barely move with other people's load: compare those. A quick look at the quiet
end is ``--phases idle,latency`` (about two minutes).

Latency is receiver arrival minus the 202 at the generator, both ``time.time()`` on this
machine (a batch's events share their 202 time). CPU is shown per component, in cores, so a
missed target points at who is busy. Targets are printed with pass/fail; the script exits
non-zero only when something crashes. Every process it starts is stopped by PID at the end,
Ctrl-C included.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import hmac
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import orjson

from bench._common import (
    API_KEY,
    AUTH,
    CpuMeter,
    EventShape,
    LoadProcess,
    LoadResult,
    PgCpuByBackend,
    PgWatcher,
    TxnStats,
    context_switches,
    delta,
    machine_busy_seconds,
    make_event,
    memory_kib,
    merge_results,
    parse_pg_trace,
    percentile,
    pg_counters,
    process_tree,
    run_load,
    scrape,
)
from bench._receiver import ReceiverProcess
from deploy.embedded.ports import free_port
from deploy.embedded.services import ServiceName, ServiceProcess, start_service
from deploy.embedded.stack import EmbeddedStack
from shared.adapters.pg.migrations import apply_migrations

ACCOUNT = "bench_e2e"
TYPE_PREFIX = "bench.t"
PHASES = ("sustained", "latency", "ceiling", "backlog", "idle")
STACK = ("ingest", "dispatcher", "admin", "postgres", "broker")  # what an installation runs
STATS_LAG_S = 11.0  # an idle backend publishes its table counters within 10 s
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


# ----------------------------------------------------------------- running processes

@dataclass
class Cluster:
    """Everything this run started; :meth:`stop` ends all of it by PID.

    ``stack`` is None when Postgres and Kafka are given (nothing embedded runs). The CPU of
    the ``postgres`` and ``broker`` columns is that of ``postgres_pid`` / ``opts.kafka_pid``
    and their children when set, else of the embedded ones (0: not measured); ``broker_pids``,
    when not None, overrides both for the broker (a cluster has one process per node).
    Endpoints and events belong to ``account``.
    """

    stack: EmbeddedStack | None
    dsn: str
    env: dict[str, str]
    logs: Path
    opts: argparse.Namespace
    account: str = ACCOUNT
    postgres_pid: int | None = None
    # the benchmark's own Postgres backends (the wait-profile sampler): not the stack's CPU
    observer_pids: set[int] = field(default_factory=set)
    broker_pids: tuple[int, ...] | None = None
    receiver: ReceiverProcess = field(default_factory=ReceiverProcess)
    ingest: list[ServiceProcess] = field(default_factory=list)
    dispatchers: list[ServiceProcess] = field(default_factory=list)
    admin: ServiceProcess | None = None
    starts: int = 0
    profilers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def _start(self, name: ServiceName, port_var: str, extra: dict[str, str]) -> ServiceProcess:
        self.starts += 1
        env = {**self.env, port_var: str(free_port()), **extra}
        return start_service(name, env, self.logs / f"{name}-{self.starts}.log")

    def start_services(self) -> None:
        self.ingest = [self._start("ingest", "POSTWIRE_INGEST_PORT", dict(self.opts.ingest_env))
                       for _ in range(self.opts.ingest_procs)]
        self.admin = self._start("dlq_replay", "POSTWIRE_ADMIN_PORT",
                                 {"POSTWIRE_ADMIN_TOKENS": "bench:bench-admin-token-01"})
        for service in [*self.ingest, self.admin]:
            service.wait_healthy(timeout_s=60)
        self.start_dispatchers()

    def start_dispatchers(self) -> None:
        extra = dict(self.opts.dispatcher_env)
        self.dispatchers = [self._start("dispatcher", "POSTWIRE_DISPATCHER_PORT", extra)
                            for _ in range(self.opts.dispatchers)]
        for service in self.dispatchers:
            service.wait_healthy(timeout_s=60)

    def stop_dispatchers(self) -> None:
        for service in self.dispatchers:
            service.stop(timeout_s=20)

    def stop(self) -> None:
        for service in [*self.dispatchers, *self.ingest, *([self.admin] if self.admin else [])]:
            with contextlib.suppress(Exception):
                service.stop(timeout_s=10)
        self.receiver.stop()
        for spy in self.profilers:
            if spy.poll() is None:
                spy.terminate()
                spy.wait(10)

    def groups(self) -> dict[str, Callable[[], list[int]]]:
        """The PIDs of each component, looked up when called (processes come and go)."""
        pg = self.postgres_pid
        if pg is None:
            pg = (self.stack.postgres.pid if self.stack else 0) or 0
        embedded = (self.stack.broker.pid if self.stack else 0) or 0
        brokers: tuple[int, ...] = (self.broker_pids if self.broker_pids is not None
                                    else (int(self.opts.kafka_pid or embedded),))
        return {
            "ingest": lambda: [s.pid for s in self.ingest],
            "dispatcher": lambda: [s.pid for s in self.dispatchers],
            "postgres": lambda: [p for p in (process_tree(pg) if pg else [])
                                 if p not in self.observer_pids],
            "broker": lambda: [p for pid in brokers if pid for p in process_tree(pid)],
            "receiver": lambda: [self.receiver.pid],
            "admin": lambda: [self.admin.pid] if self.admin else [],
        }

    def cpu_meter(self) -> CpuMeter:
        return CpuMeter(self.groups())

    def wakeups(self) -> dict[str, int]:
        """Context switches so far per component (see :func:`context_switches`)."""
        return {name: context_switches(pids()) for name, pids in self.groups().items()}

    def dispatcher_metrics(self) -> dict[str, float]:
        return scrape([s.base_url for s in self.dispatchers])


@dataclass
class PgView:
    """What Postgres did over a phase: counter deltas and the sampled wait profile."""

    counters: dict[str, float] = field(default_factory=dict)
    busy: dict[str, float] = field(default_factory=dict)
    lock_queries: list[tuple[str, int]] = field(default_factory=list)
    cpu_by_backend: dict[str, float] = field(default_factory=dict)


class PgObserver:
    """``start`` / ``stop`` around a phase; see :class:`PgView`."""

    def __init__(self, dsn: str, postmaster_pid: int = 0) -> None:
        self._dsn = dsn
        self._watcher = PgWatcher(dsn)
        self._cpu = PgCpuByBackend(dsn, postmaster_pid)
        self._cpu_cores: dict[str, float] | None = None
        self._before: dict[str, float] = {}

    def start(self) -> None:
        self._before = asyncio.run(pg_counters(self._dsn))
        self._cpu.start()
        self._watcher.start()

    @property
    def backend_pid(self) -> int:
        """The sampling connection's backend (0 until connected): the benchmark's, so not
        counted as the stack's Postgres CPU."""
        return self._watcher.backend_pid

    def stop_cpu(self) -> None:
        """End the CPU-by-backend window (with the phase's CPU meter, so both cover the
        same seconds); :meth:`stop` ends it otherwise."""
        if self._cpu_cores is None:
            self._cpu_cores = self._cpu.stop()

    def stop(self) -> PgView:
        self._watcher.stop()
        self.stop_cpu()
        cpu = self._cpu_cores or {}
        time.sleep(STATS_LAG_S)
        after = asyncio.run(pg_counters(self._dsn))
        return PgView({k: v - self._before.get(k, 0.0) for k, v in after.items()},
                      self._watcher.busy(), self._watcher.lock_queries.most_common(4), cpu)


class PgTrace:
    """With ``--pg-trace``: every statement's duration logged over a phase, then grouped."""

    def __init__(self, cluster: Cluster) -> None:
        self._dsn = cluster.dsn
        self._log = cluster.stack.postgres.log_path if cluster.stack else Path()
        self._enabled = bool(cluster.opts.pg_trace) and cluster.stack is not None
        self._offset = 0

    async def _set(self, on: bool) -> None:
        conn = await asyncpg.connect(self._dsn)
        try:
            if on:
                await conn.execute("ALTER SYSTEM SET log_min_duration_statement = 0")
                await conn.execute("ALTER SYSTEM SET log_parameter_max_length = 0")
            else:
                await conn.execute("ALTER SYSTEM RESET log_min_duration_statement")
                await conn.execute("ALTER SYSTEM RESET log_parameter_max_length")
            await conn.execute("SELECT pg_reload_conf()")
        finally:
            await conn.close()

    def start(self) -> None:
        if self._enabled:
            asyncio.run(self._set(True))
            time.sleep(0.5)
            self._offset = self._log.stat().st_size

    def stop(self) -> dict[str, TxnStats]:
        if not self._enabled:
            return {}
        asyncio.run(self._set(False))
        with self._log.open("rb") as f:
            f.seek(self._offset)
            text = f.read().decode(errors="replace")
        return parse_pg_trace(text)


async def _prepare_db(stack: EmbeddedStack) -> str:
    stack.postgres.create_database("bench_e2e")
    dsn = stack.postgres.dsn_for("bench_e2e")
    await apply_migrations(dsn)
    return dsn


async def _db_fetch(dsn: str, sql: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        rows: list[asyncpg.Record] = await conn.fetch(sql)
        return rows
    finally:
        await conn.close()


def _watch(cluster: Cluster) -> tuple[PgObserver, PgTrace, CpuMeter]:
    """Start what a measured phase reads afterwards: the Postgres wait-profile observer, the
    statement trace (active only with ``--pg-trace``) and the CPU meter."""
    observer = PgObserver(cluster.dsn, cluster.postgres_pid
                          or (cluster.stack.postgres.pid if cluster.stack else 0) or 0)
    observer.start()
    cluster.observer_pids = {observer.backend_pid}
    trace = PgTrace(cluster)
    trace.start()
    meter = cluster.cpu_meter()
    meter.start()
    return observer, trace, meter


def _http_json(method: str, url: str, body: Any = None) -> tuple[int, Any]:
    data = orjson.dumps(body) if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers=AUTH)
    try:
        with _NO_PROXY.open(request, timeout=30) as response:
            return response.status, orjson.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


def create_endpoints(cluster: Cluster) -> None:
    """Endpoint ``i`` receives event type ``bench.t<i>`` at ``/hook/<i>`` of the receiver."""
    for i in range(cluster.opts.endpoints):
        body = {"account_id": cluster.account, "url": cluster.receiver.url(str(i)),
                "event_types": [f"{TYPE_PREFIX}{i}"], "max_in_flight": cluster.opts.max_in_flight}
        status, answer = _http_json("POST", f"{cluster.ingest[0].base_url}/v1/endpoints", body)
        if status != 201:
            raise RuntimeError(f"creating an endpoint failed: {status} {answer}")


# ----------------------------------------------------------------- measuring

@dataclass
class Phase:
    """One measured phase: what was offered, what arrived, and what it cost."""

    name: str
    load: LoadResult
    receipts: dict[str, float]          # event id -> first arrival
    window: tuple[float, float]
    cores: dict[str, float]
    metrics: dict[str, float]
    duplicates: int = 0
    kafka: dict[str, tuple[float, float]] = field(default_factory=dict)  # id -> (record ts, read)
    probed: bool = False                # a Kafka probe ran (``kafka`` is then meaningful)
    pg: PgView = field(default_factory=PgView)
    trace: dict[str, TxnStats] = field(default_factory=dict)
    legs: list[tuple[str, list[float]]] = field(default_factory=list)
    generators: list[LoadResult] = field(default_factory=list)  # each load process's own

    @property
    def seconds(self) -> float:
        return max(self.load.ended - self.load.started, 1e-9)

    def in_window(self) -> list[tuple[str, float]]:
        lo, hi = self.window
        return [(i, t) for i, t in self.load.accepted if lo <= t <= hi]

    def latencies_ms(self) -> list[float]:
        return [(self.receipts[i] - t) * 1000 for i, t in self.in_window() if i in self.receipts]

    def delivered_per_s(self) -> float:
        lo, hi = self.window
        return sum(1 for t in self.receipts.values() if lo <= t <= hi) / max(hi - lo, 1e-9)

    def missing(self) -> int:
        return sum(1 for i, _ in self.load.accepted if i not in self.receipts)

    def tail_s(self) -> float:
        return max(self.receipts.values(), default=self.load.ended) - self.load.ended


def _by_event(raw: dict[str, float]) -> dict[str, float]:
    out: dict[str, float] = {}
    for key, at in raw.items():
        event_id = key.partition(" ")[2]
        out[event_id] = min(at, out.get(event_id, at))
    return out


def wait_delivered(rx: ReceiverProcess, expected: int, timeout_s: float, stall_s: float,
                   on_tick: Any = None) -> int:
    """Poll the receiver until ``expected`` distinct keys arrived since the last take, nothing
    arrived for ``stall_s``, or ``timeout_s`` passed; returns the count reached."""
    deadline = time.monotonic() + timeout_s
    last, last_change = -1, time.monotonic()
    while True:
        count = rx.stats()["distinct"]
        now = time.monotonic()
        if count != last:
            last, last_change = count, now
        if on_tick is not None:
            on_tick()
        if count >= expected or now > deadline or now - last_change > stall_s:
            return count
        time.sleep(0.2)


def run_offer(cluster: Cluster, name: str, rate: float, per_request: int, duration_s: float,
              warm_s: float, seq: int, probe: bool = False, generators: int = 1) -> Phase:
    """Offer load, wait for the deliveries to arrive (bounded), collect the receipts.

    ``generators`` load processes share ``rate`` equally, generator *k* posting to ingest
    process *k mod n* (sequence numbers 100,000,000 apart, so events never repeat). With
    ``probe``, a side consumer notes which delivery messages went through Kafka and their
    record timestamps (``Phase.kafka``; ``Phase.probed``).
    """
    rx = cluster.receiver
    rx.take()
    shape = EventShape(cluster.account, TYPE_PREFIX, cluster.opts.endpoints,
                       cluster.opts.payload_bytes)
    spy: LoadProcess | None = None
    if probe:
        spy = LoadProcess("probe", bootstrap=cluster.env["POSTWIRE_KAFKA_BOOTSTRAP"],
                          topic=cluster.env["POSTWIRE_TOPIC_PREFIX"] + "deliveries",
                          duration_s=duration_s + 8)
        time.sleep(4)  # let it start and seek to the end before events flow
    before = cluster.dispatcher_metrics()
    observer, trace, meter = _watch(cluster)
    try:
        loads = [LoadProcess("offer", url=cluster.ingest[k % len(cluster.ingest)].base_url,
                             shape=shape, rate=rate / generators, per_request=per_request,
                             duration_s=duration_s, max_outstanding=cluster.opts.max_outstanding,
                             first_seq=seq + k * 100_000_000)
                 for k in range(generators)]
        try:
            each = [gen.result(duration_s + 120) for gen in loads]
        finally:
            for gen in loads:
                gen.stop()
        load = merge_results(each)
        cores = meter.stop({"loadgen": load.cpu_s})
        observer.stop_cpu()
        seen = spy.result(30) if spy is not None else None
    finally:
        if spy is not None:
            spy.stop()
    wait_delivered(rx, len(load.accepted), cluster.opts.drain_timeout, stall_s=15)
    traced = trace.stop()
    pg = observer.stop()
    stats = rx.stats()
    metrics = delta(cluster.dispatcher_metrics(), before, "postwire_")
    window = (load.started + warm_s, load.ended)
    phase = Phase(name, load, _by_event(rx.take()), window, cores, metrics, stats["duplicates"],
                  pg=pg, trace=traced, generators=each)
    if seen is not None:
        phase.probed = True
        phase.kafka = {event_id: (ts, at) for (event_id, ts), at in
                       zip(seen.accepted, seen.request_s, strict=True)}
    return phase


_LEGS_SQL = """
SELECT e.id, e.created_at, a.started_at, a.duration_ms FROM events e
JOIN deliveries d ON d.event_id = e.id
JOIN attempts a ON a.delivery_id = d.id AND a.attempt = 1
WHERE e.id = ANY($1::text[])
"""


async def _legs_rows(dsn: str, ids: list[str]) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        rows: list[asyncpg.Record] = await conn.fetch(_LEGS_SQL, ids)
        return rows
    finally:
        await conn.close()


def latency_legs(dsn: str, accepted: dict[str, float], receipts: dict[str, float],
                 kafka: dict[str, tuple[float, float]]) -> list[tuple[str, list[float]]]:
    """Accept-to-receive split into legs (ms), per event, all on this machine's clock: ingest's
    ``created_at``, the 202 (``accepted``), the Kafka record timestamp (the producer's send,
    for the events whose message went through Kafka: ``kafka``), the dispatcher's attempt
    start and duration (``attempts``), the receiver's arrival (``receipts``). The probe's
    read time is not a leg: it long-polls (see ``bench._common._probe``)."""
    rows = asyncio.run(_legs_rows(dsn, list(accepted)))
    legs: dict[str, list[float]] = {}

    def add(name: str, value: float) -> None:
        legs.setdefault(name, []).append(value * 1000)

    for r in rows:
        event_id, created = r["id"], r["created_at"].timestamp()
        started, arrived = r["started_at"].timestamp(), receipts.get(event_id)
        add("created -> 202 read by generator", accepted[event_id] - created)
        if event_id in kafka:
            record_ts, _read = kafka[event_id]
            add("created -> Kafka record (producer send)", record_ts - created)
            add("Kafka record -> attempt start (fetch, claim)", started - record_ts)
        add("created -> attempt start", started - created)
        add("attempt duration (dispatcher's own measure)", r["duration_ms"] / 1000)
        if arrived is not None:
            add("attempt start -> receiver arrival", arrived - started)
            add("receiver arrival -> attempt end", started + r["duration_ms"] / 1000 - arrived)
            add("created -> receiver arrival", arrived - created)
            add("202 -> receiver arrival (reported)", arrived - accepted[event_id])
    return list(legs.items())


def print_legs(title: str, legs: list[tuple[str, list[float]]],
               transport: str | None = None) -> None:
    print(f"\nWhere the time goes: {title} (ms, per event; one clock)")
    if transport is not None:
        print(transport)
    print(f"{'leg':<46}{'n':>7}{'p50':>9}{'p90':>9}{'p99':>9}")
    for name, values in legs:
        print(f"{name:<46}{len(values):>7}{fmt(percentile(values, 0.5), 1):>9}"
              f"{fmt(percentile(values, 0.9), 1):>9}{fmt(percentile(values, 0.99), 1):>9}")


def transport_line(phase: Phase) -> str | None:
    """Which transport carried the phase's delivery messages, when a Kafka probe watched it:
    at low rates Postgres is the only one (wake-ups) and there is no Kafka leg to show."""
    if not phase.probed:
        return None
    events = [event_id for event_id, _ in phase.in_window()]
    by_kafka = sum(1 for event_id in events if event_id in phase.kafka)
    if by_kafka == 0:
        return (f"transport: Postgres only - none of the {len(events):,} delivery messages went"
                " through Kafka (each was taken from its wake-up and its outbox row deleted by"
                " the claim), so there is no Kafka leg")
    return (f"transport: {by_kafka:,} of {len(events):,} delivery messages went through Kafka"
            " (the Kafka legs are over those); the rest only through Postgres")


async def _open_deliveries(dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval(
            "SELECT count(*) FROM deliveries WHERE status IN ('pending', 'retrying')"))
    finally:
        await conn.close()


def settle(cluster: Cluster, before: str) -> int:
    """Wait (bounded) until no delivery is open, so one phase's backlog does not leak into the
    next; says so when it had to give up. Returns how many are still open."""
    deadline = time.monotonic() + cluster.opts.drain_timeout
    while (left := asyncio.run(_open_deliveries(cluster.dsn))) and time.monotonic() < deadline:
        time.sleep(1.0)
    if left:
        print(f"  note: {left:,} deliveries of earlier phases still open before {before}")
    return left


def warm_up(cluster: Cluster) -> None:
    """A little traffic until it all arrives: group joined, connections and plans warm."""
    phase = run_offer(cluster, "warm-up", 500, 10, 3.0, 0.0, 10_000_000)
    if not phase.receipts:
        tail = cluster.dispatchers[0].log_tail(40) if cluster.dispatchers else ""
        raise RuntimeError(f"nothing was delivered during the warm-up; dispatcher log:\n{tail}")
    print(f"warm-up: {len(phase.load.accepted)} accepted, {len(phase.receipts)} delivered, "
          f"p50 {percentile(phase.latencies_ms(), 0.5):.1f} ms")


def webhook_like(cluster: Cluster) -> tuple[bytes, dict[str, str]]:
    """A body and headers shaped like a real delivery (signature computed the same way)."""
    event = make_event(EventShape(ACCOUNT, TYPE_PREFIX, 1, cluster.opts.payload_bytes), 1)
    body = orjson.dumps({"id": "evt_01JCEILING0000000000000000", "type": event["type"],
                         "timestamp": "2026-01-01T00:00:00.000Z", "account_id": ACCOUNT,
                         "data": event["data"]})
    ts = str(int(time.time()))
    mac = hmac.new(b"k" * 32, b"evt_01JCEILING0000000000000000." + ts.encode() + b"." + body,
                   hashlib.sha256).digest()
    return body, {"Content-Type": "application/json", "User-Agent": "Postwire/0.1.0",
                  "webhook-timestamp": ts,
                  "webhook-signature": "v1," + base64.b64encode(mac).decode()}


def run_ceiling(cluster: Cluster) -> LoadResult:
    body, headers = webhook_like(cluster)
    result = run_load("ceiling", cluster.opts.ceiling_duration + 60,
                      url=cluster.receiver.url("ceiling"), body=body, headers=headers,
                      concurrency=cluster.opts.ceiling_concurrency,
                      duration_s=cluster.opts.ceiling_duration)
    cluster.receiver.take()
    return result


@dataclass
class Backlog:
    total: int
    ingest_s: float
    outbox_wait_s: float
    delivered: int
    drain_s: float                      # dispatcher start -> last delivery
    first_s: float                      # dispatcher start -> first delivery (start, group join)
    rate: float                         # deliveries/s, first -> last delivery
    hwm_mib: list[float]                # VmHWM per dispatcher
    rss_max_mib: float                  # max sampled VmRSS of one dispatcher
    cores: dict[str, float]
    cpu_ms: dict[str, float]            # CPU milliseconds per delivery, by component
    metrics: dict[str, float]
    statuses: dict[str, int]
    pg: PgView
    leftover: int
    trace: dict[str, TxnStats]
    legs: list[tuple[str, list[float]]]
    meter_s: float = 0.0                # seconds the CPU meter ran


async def _outbox_empty(dsn: str, timeout_s: float) -> float:
    t0 = time.monotonic()
    conn = await asyncpg.connect(dsn)
    try:
        while time.monotonic() - t0 < timeout_s:
            if await conn.fetchval("SELECT count(*) FROM outbox") == 0:
                break
            await asyncio.sleep(0.2)
    finally:
        await conn.close()
    return time.monotonic() - t0


def run_backlog(cluster: Cluster, seq: int, leftover: int) -> Backlog:
    """``leftover``: deliveries of earlier phases still open; they are drained too (the wait
    counts them) but the figures are for the backlog's own events."""
    opts, rx = cluster.opts, cluster.receiver
    cluster.stop_dispatchers()
    rx.take()
    shape = EventShape(cluster.account, TYPE_PREFIX, opts.endpoints, opts.payload_bytes)
    load = run_load("bulk", 600, url=cluster.ingest[0].base_url, shape=shape,
                    total=opts.backlog, per_request=500, concurrency=4, first_seq=seq)
    outbox_wait = asyncio.run(_outbox_empty(cluster.dsn, 120))
    time.sleep(STATS_LAG_S)  # so the ingest's row counters are not counted as the drain's
    observer, trace, meter = _watch(cluster)
    started = time.time()
    cluster.start_dispatchers()
    spies = _profile(cluster, 30, "backlog")
    rss_max = [0]

    def sample() -> None:
        for service in cluster.dispatchers:
            rss_max[0] = max(rss_max[0], memory_kib(service.pid, "VmRSS"))

    wait_delivered(rx, len(load.accepted) + leftover, opts.backlog_timeout, stall_s=30,
                   on_tick=sample)
    cores = meter.stop()
    for spy in spies:
        spy.wait(timeout=60)
    hwm = [memory_kib(s.pid, "VmHWM") / 1024 for s in cluster.dispatchers]
    metrics = cluster.dispatcher_metrics()
    traced = trace.stop()
    pg = observer.stop()
    accepted = dict(load.accepted)
    receipts = {i: t for i, t in _by_event(rx.take()).items() if i in accepted}
    arrivals = sorted(receipts.values())
    delivered = len(arrivals)
    cpu_ms = {k: v * meter.elapsed * 1000 / max(delivered, 1) for k, v in cores.items()}
    statuses = {r["status"]: r["n"] for r in asyncio.run(_db_fetch(
        cluster.dsn, "SELECT status, count(*) AS n FROM deliveries GROUP BY status"))}
    span = (arrivals[-1] - arrivals[0]) if len(arrivals) > 1 else 0.0
    return Backlog(
        total=len(load.accepted), ingest_s=load.ended - load.started, outbox_wait_s=outbox_wait,
        delivered=delivered, drain_s=(arrivals[-1] - started) if arrivals else float("nan"),
        first_s=(arrivals[0] - started) if arrivals else float("nan"),
        rate=delivered / span if span else 0.0, hwm_mib=hwm, rss_max_mib=rss_max[0] / 1024,
        cores=cores, cpu_ms=cpu_ms, metrics=delta(metrics, {}, "postwire_"), statuses=statuses,
        pg=pg, leftover=leftover, trace=traced,
        legs=latency_legs(cluster.dsn, accepted, receipts, {}), meter_s=meter.elapsed)


@dataclass
class Idle:
    """What a stack with no traffic costs, per second."""

    seconds: float
    cores: dict[str, float]
    wakeups: dict[str, float]           # context switches per second, by component
    commits_per_s: float
    wal_bytes_per_s: float
    wal_syncs_per_s: float
    trace: dict[str, TxnStats] = field(default_factory=dict)


def run_idle(cluster: Cluster) -> Idle:
    """``--idle-duration`` s of no traffic after ``--idle-quiet`` s for the last traffic's
    timers to run out. Postgres counters are read outside the CPU window (a reading opens a
    connection); they lag by up to 10 s at both ends, so their rate is over the same span."""
    opts = cluster.opts
    settle(cluster, "the idle phase")
    time.sleep(opts.idle_quiet)
    trace = PgTrace(cluster)
    trace.start()
    t0 = time.perf_counter()
    pg_before = asyncio.run(pg_counters(cluster.dsn))
    meter = cluster.cpu_meter()
    wakes_before = cluster.wakeups()
    meter.start()
    time.sleep(opts.idle_duration)
    cores = meter.stop()
    wakes_after = cluster.wakeups()
    pg_after = asyncio.run(pg_counters(cluster.dsn))
    span = time.perf_counter() - t0
    traced = trace.stop()
    wakeups = {k: (wakes_after[k] - wakes_before.get(k, 0)) / meter.elapsed
               for k in wakes_after}
    return Idle(meter.elapsed, cores, wakeups,
                (pg_after["commits"] - pg_before["commits"]) / span,
                (pg_after["wal_bytes"] - pg_before["wal_bytes"]) / span,
                (pg_after["wal_syncs"] - pg_before["wal_syncs"]) / span, traced)


def print_idle(idle: Idle) -> None:
    names = [*STACK, "receiver"]
    print(f"\nIdle: {idle.seconds:.0f} s without traffic (cores; wake-ups = context switches "
          "per second of every thread)")
    print(f"{'':<12}" + "".join(f"{n:>11}" for n in names) + f"{'stack':>9}{'other':>7}")
    print(f"{'cores':<12}" + "".join(f"{fmt(idle.cores.get(n, 0.0), 3):>11}" for n in names)
          + f"{fmt(stack_cores(idle.cores), 3):>9}{fmt(idle.cores.get('other', 0.0), 2):>7}")
    print(f"{'wake-ups/s':<12}" + "".join(f"{fmt(idle.wakeups.get(n, 0.0), 0):>11}"
                                          for n in names)
          + f"{fmt(sum(idle.wakeups.get(n, 0.0) for n in STACK), 0):>9}")
    print(f"  Postgres: {idle.commits_per_s:.2f} commits/s (includes the 3 of each counter "
          f"reading), {idle.wal_syncs_per_s:.2f} WAL fsyncs/s, {idle.wal_bytes_per_s:,.0f} B of "
          "WAL/s")


# ----------------------------------------------------------------- printing

def fmt(value: float, digits: int = 0) -> str:
    """``value`` with thousands separators and ``digits`` decimals; ``-`` for NaN."""
    return "-" if value != value else f"{value:,.{digits}f}"  # NaN -> "-"


def print_offer_table(title: str, phases: list[Phase], ceiling: float | None) -> None:
    print(f"\n{title}")
    print(f"{'scenario':<34}{'offered/s':>10}{'accepted/s':>11}{'delivered/s':>12}"
          f"{'p50 ms':>9}{'p99 ms':>9}{'missing':>8}{'dupes':>6}{'x ceil':>8}{'tail s':>8}")
    for p in phases:
        lat = p.latencies_ms()
        delivered = p.delivered_per_s()
        ratio = fmt(delivered / ceiling, 2) if ceiling else "-"
        print(f"{p.name:<34}{fmt(p.load.offered / p.seconds):>10}"
              f"{fmt(len(p.load.accepted) / p.seconds):>11}{fmt(delivered):>12}"
              f"{fmt(percentile(lat, 0.5), 1):>9}{fmt(percentile(lat, 0.99), 1):>9}"
              f"{p.missing():>8}{p.duplicates:>6}{ratio:>8}{fmt(p.tail_s(), 1):>8}")
        extra = (f"  ingest requests: p50 {fmt(percentile(p.load.request_s, 0.5) * 1000, 1)} ms,"
                 f" p99 {fmt(percentile(p.load.request_s, 0.99) * 1000, 1)} ms;"
                 f" skipped ticks: {p.load.skipped} events; errors: {p.load.errors}")
        print(extra)


def stack_cores(cores: dict[str, float]) -> float:
    """Cores of what an installation runs (:data:`STACK`), from cores per component."""
    return sum(cores.get(n, 0.0) for n in STACK)


def print_cpu(rows: list[tuple[str, dict[str, float], float]]) -> None:
    """``rows``: (phase, cores by component, deliveries per second over the same window)."""
    names = ["ingest", "dispatcher", "postgres", "broker", "receiver", "loadgen", "admin"]
    print("\nCPU in cores per component (other = the rest of the machine meanwhile: if it is"
          " not ~0, someone else's load skews the numbers; stack = ingest + dispatcher + admin"
          " + postgres + broker; ms/deliv = the stack's CPU milliseconds per delivery)")
    print(f"{'phase':<34}" + "".join(f"{n:>11}" for n in names)
          + f"{'ours':>7}{'other':>7}{'stack':>7}{'ms/deliv':>9}")
    for label, cores, per_s in rows:
        ours = sum(v for k, v in cores.items() if k != "other")
        stack = stack_cores(cores)
        print(f"{label:<34}" + "".join(f"{fmt(cores.get(n, float('nan')), 2):>11}"
                                       for n in names)
              + f"{fmt(ours, 2):>7}{fmt(cores.get('other', float('nan')), 2):>7}"
              + f"{fmt(stack, 2):>7}{fmt(stack * 1000 / per_s if per_s else float('nan'), 2):>9}")


def _sum(metrics: dict[str, float], prefix: str) -> float:
    return sum(v for k, v in metrics.items() if k.startswith(prefix))


def describe_internals(metrics: dict[str, float]) -> str:
    """One paragraph of the dispatcher's own counters over a phase."""
    claims = {k.split('"')[1]: int(v) for k, v in metrics.items()
              if k.startswith("postwire_claims_total{")}
    republished = {k.split('"')[1]: int(v) for k, v in metrics.items()
                   if k.startswith("postwire_republished_total{")}
    commits = _sum(metrics, "postwire_outcome_batch_size_count")
    outcomes = _sum(metrics, "postwire_outcome_batch_size_sum")
    commit_s = _sum(metrics, "postwire_outcome_commit_seconds_sum")
    attempts = _sum(metrics, "postwire_attempt_duration_seconds_count")
    attempt_s = _sum(metrics, "postwire_attempt_duration_seconds_sum")
    return (f"claims {claims}; re-published {republished}; attempts {int(attempts)} "
            f"(mean {fmt(attempt_s / attempts * 1000 if attempts else float('nan'), 1)} ms); "
            f"outcome commits {int(commits)} (mean {fmt(outcomes / commits if commits else 0, 1)}"
            f" outcomes, {fmt(commit_s / commits * 1000 if commits else float('nan'), 1)} ms)")


def print_backlog(b: Backlog) -> None:
    print("\nBacklog drain (dispatchers stopped while the backlog was ingested)")
    print(f"{'deliveries':>11}{'ingest s':>10}{'delivered':>11}{'first s':>9}{'drain s':>9}"
          f"{'deliv/s':>9}{'peak RSS MiB (VmHWM)':>22}{'max VmRSS':>11}")
    print(f"{b.total:>11,}{fmt(b.ingest_s, 1):>10}{b.delivered:>11,}{fmt(b.first_s, 1):>9}"
          f"{fmt(b.drain_s, 1):>9}{fmt(b.rate):>9}{', '.join(fmt(h, 0) for h in b.hwm_mib):>22}"
          f"{fmt(b.rss_max_mib, 0):>11}")
    print("  first s / drain s: from the dispatchers' start to the first / last delivery; "
          "deliv/s: first to last delivery")
    print(f"  outbox emptied {b.outbox_wait_s:.1f} s after the ingest finished; delivery statuses "
          f"in Postgres at the end: {b.statuses}")
    if b.leftover:
        print(f"  {b.leftover:,} deliveries left open by earlier phases were drained alongside")
    ours = {k: v for k, v in b.cpu_ms.items() if k != "other" and v > 0.005}
    total = sum(ours.values())
    print("  CPU per delivery while draining (ms): "
          + ", ".join(f"{k} {v:.2f}" for k, v in ours.items())
          + f"; total {total:.2f} -> at most ~{2000 / total if total else 0:,.0f} deliveries/s"
          " on 2 cores at this cost")


def print_pg(rows: list[tuple[str, PgView, int]]) -> None:
    """Postgres work per delivery and what its busy backends were waiting on."""
    print("\nPostgres per delivery (whole database: ingest + dispatcher + scheduler) and its "
          "wait profile (mean active backends, sampled every 50 ms)")
    for label, view, deliveries in rows:
        c, n = view.counters, max(deliveries, 1)
        writes = {k: v / n for k, v in sorted(c.items()) if "." in k and v / n >= 0.05}
        print(f"{label}: {deliveries:,} deliveries; commits {c.get('commits', 0) / n:.2f} "
              f"(WAL fsyncs {c.get('wal_syncs', 0) / n:.2f}), "
              f"WAL {c.get('wal_bytes', 0) / n / 1024:.1f} KiB, deadlocks "
              f"{c.get('deadlocks', 0):.0f}; rows " + ", ".join(f"{k} {v:.2f}"
                                                              for k, v in writes.items()))
        print("    busy backends: " + ", ".join(f"{k} {v:.2f}" for k, v in
                                              list(view.busy.items())[:7]))
        print("    CPU by backend (cores): " + ", ".join(
            f"{k} {v:.3f}" for k, v in view.cpu_by_backend.items() if v >= 0.0005))
        for query, count in view.lock_queries:
            print(f"    waiting on a lock ({count} samples): {query[:110]}")


def print_trace(label: str, trace: dict[str, TxnStats], deliveries: int) -> None:
    """Transactions by kind over a phase (``--pg-trace``): round trips and where time went."""
    if not trace:
        return
    n = max(deliveries, 1)
    print(f"\nPostgres statement trace, {label} ({deliveries:,} deliveries; times are means per "
          "transaction, wall = BEGIN to COMMIT as logged, the gap to server+commit is the client)")
    print(f"{'transaction kind':<62}{'count':>7}{'/deliv':>8}{'stmts':>7}{'server':>8}"
          f"{'commit':>8}{'wall':>8}")
    for kind, st in sorted(trace.items(), key=lambda kv: -kv[1].count)[:14]:
        c = max(st.count, 1)
        print(f"{kind[:61]:<62}{st.count:>7}{st.count / n:>8.3f}{st.statements / c:>7.1f}"
              f"{st.server_ms / c:>8.2f}{st.commit_ms / c:>8.2f}{st.wall_ms / c:>8.2f}")
        if kind.startswith("dispatcher") and st.count >= 10:
            for stmt, (calls, ms) in sorted(st.by_statement.items(), key=lambda kv: -kv[1][1]):
                print(f"      {stmt[:58]:<58}{calls / c:>9.2f}/txn {ms / max(calls, 1):>8.2f} ms")


def print_targets(results: dict[str, float]) -> None:
    rows: list[tuple[str, str, float | None, Callable[[float], bool], int]] = [
        ("sustained deliveries/s", ">= 2,000", results.get("sustained"),
         lambda v: v >= 2000, 0),
        ("p50 accept-to-receive at 200/s (ms)", "<= 30", results.get("latency_p50"),
         lambda v: v <= 30, 1),
        ("p99 accept-to-receive at 200/s (ms)", "<= 100", results.get("latency_p99"),
         lambda v: v <= 100, 1),
        ("stack cores at 200/s", "<= 0.35", results.get("latency_stack"),
         lambda v: v <= 0.35, 2),
        ("stack cores idle", "<= 0.05", results.get("idle_stack"), lambda v: v <= 0.05, 3),
        ("backlog fully drained (deliveries)", f"= {results.get('backlog_total', 0):,.0f}",
         results.get("backlog_delivered"), lambda v: v >= results.get("backlog_total", 0), 0),
        ("dispatcher peak RSS in drain (MiB)", "< 300", results.get("backlog_rss"),
         lambda v: v < 300, 0),
    ]
    print(f"\nTargets (2-core machine)\n{'target':<40}{'wanted':>12}{'measured':>12}{'result':>8}")
    for label, wanted, value, ok, digits in rows:
        if value is None:
            print(f"{label:<40}{wanted:>12}{'not run':>12}{'-':>8}")
        else:
            verdict = "PASS" if ok(value) else "FAIL"
            print(f"{label:<40}{wanted:>12}{fmt(value, digits):>12}{verdict:>8}")


# ----------------------------------------------------------------- main

@contextlib.contextmanager
def workdir(path: str | None) -> Iterator[Path]:
    """``path`` wiped and created (kept afterwards), or a temporary directory deleted at exit."""
    if path:
        base = Path(path).resolve()
        if base.exists():
            shutil.rmtree(base)
        base.mkdir(parents=True)
        yield base
    else:
        with tempfile.TemporaryDirectory(prefix="postwire-bench-e2e-") as tmp:
            yield Path(tmp)


def _profile(cluster: Cluster, seconds: float, tag: str) -> list[subprocess.Popen[bytes]]:
    """Start ``py-spy record`` on each dispatcher (when ``--py-spy`` and py-spy exist)."""
    exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not cluster.opts.py_spy or not Path(exe).exists():
        return []
    spies = [subprocess.Popen(
        [exe, "record", "--pid", str(s.pid), "--duration", str(int(seconds)), "--rate", "200",
         "--nonblocking", "--format", "speedscope",
         "--output", str(cluster.logs / f"dispatcher-{i}-{tag}.speedscope.json")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for i, s in enumerate(cluster.dispatchers)]
    cluster.profilers.extend(spies)
    return spies


def measure(cluster: Cluster) -> None:
    """Phases in a fixed order: the quiet ones first, so no leftover backlog skews them."""
    opts = cluster.opts
    results: dict[str, float] = {}
    cpu_rows: list[tuple[str, dict[str, float], float]] = []
    phases: list[Phase] = []
    warm_up(cluster)
    idle: Idle | None = None
    if "idle" in opts.phases:
        idle = run_idle(cluster)
        results["idle_stack"] = stack_cores(idle.cores)
        print_idle(idle)
    if "latency" in opts.phases:
        name = f"single POST @{opts.latency_rate:g}/s"
        latency = run_offer(cluster, name, opts.latency_rate, 1, opts.latency_duration,
                            min(opts.warm, 2.0), 5_000_000, probe=True)
        results["latency_p50"] = percentile(latency.latencies_ms(), 0.5)
        results["latency_p99"] = percentile(latency.latencies_ms(), 0.99)
        results["latency_stack"] = stack_cores(latency.cores)
        cpu_rows.append((name, latency.cores, len(latency.load.accepted) / latency.seconds))
        phases.append(latency)
        latency.legs = latency_legs(cluster.dsn, dict(latency.in_window()), latency.receipts,
                                    latency.kafka)
        print(f"  dispatcher during latency: {describe_internals(latency.metrics)}")
    ceiling: float | None = None
    if "ceiling" in opts.phases:
        settle(cluster, "the ceiling")
        meter = cluster.cpu_meter()
        meter.start()
        bare = run_ceiling(cluster)
        cpu_rows.append((f"ceiling, c={opts.ceiling_concurrency}",
                         meter.stop({"loadgen": bare.cpu_s}), 0.0))
        ceiling = bare.requests / max(bare.ended - bare.started, 1e-9)
        print(f"ceiling: bare aiohttp client -> receiver, c={opts.ceiling_concurrency}: "
              f"{ceiling:,.0f} req/s, p50 {percentile(bare.request_s, 0.5) * 1000:.2f} ms, "
              f"p99 {percentile(bare.request_s, 0.99) * 1000:.2f} ms, errors {bare.errors}")
    if "sustained" in opts.phases:
        settle(cluster, "the sustained phase")
        spies = _profile(cluster, opts.duration, "sustained")
        name = f"sustained x{opts.batch_size} @{opts.rate:g}/s"
        sustained = run_offer(cluster, name, opts.rate, opts.batch_size, opts.duration,
                              opts.warm, 0)
        for spy in spies:
            spy.wait(timeout=60)
        results["sustained"] = sustained.delivered_per_s()
        sustained.legs = latency_legs(cluster.dsn, dict(sustained.in_window()),
                                      sustained.receipts, {})
        cpu_rows.append((name, sustained.cores,
                         len(sustained.load.accepted) / sustained.seconds))
        phases.insert(0, sustained)
        print(f"  dispatcher during sustained: {describe_internals(sustained.metrics)}")
    backlog: Backlog | None = None
    if "backlog" in opts.phases:
        leftover = settle(cluster, "the backlog phase")
        backlog = run_backlog(cluster, 20_000_000, leftover)
        results.update(backlog_total=backlog.total, backlog_delivered=backlog.delivered,
                       backlog_rss=max(backlog.hwm_mib, default=float("nan")))
        cpu_rows.append((f"backlog drain ({backlog.total:,})", backlog.cores,
                         backlog.delivered / max(backlog.meter_s, 1e-9)))
        print(f"  dispatcher during backlog: {describe_internals(backlog.metrics)}")
    report(cluster, results, cpu_rows, phases, ceiling, backlog, idle)


def report(cluster: Cluster, results: dict[str, float],
           cpu_rows: list[tuple[str, dict[str, float], float]], phases: list[Phase],
           ceiling: float | None, backlog: Backlog | None, idle: Idle | None = None) -> None:
    opts = cluster.opts
    print("\n" + "=" * 100)
    print(f"settings: {opts.dispatchers} dispatcher(s), {opts.ingest_procs} ingest, "
          f"{opts.endpoints} endpoints (1 event type each, max_in_flight {opts.max_in_flight}), "
          f"partitions {opts.partitions}, payload ~{opts.payload_bytes} B, "
          f"dispatcher env {dict(opts.dispatcher_env) or '{}'}, "
          f"ingest env {dict(opts.ingest_env) or '{}'}")
    if phases:
        print_offer_table("Delivery (accept = 202 at the generator, receive = receiver clock)",
                          phases, ceiling)
    if ceiling is not None:
        print(f"\nceiling (bare aiohttp, c={opts.ceiling_concurrency}): {ceiling:,.0f} req/s")
        if "sustained" in results:
            print(f"delivered/s / ceiling: {results['sustained'] / ceiling:.2f}")
    for p in phases:
        if p.legs:
            print_legs(p.name, p.legs, transport_line(p))
    if backlog is not None:
        print_backlog(backlog)
        print_legs(f"backlog drain ({backlog.total:,}; 'created' is before the dispatcher "
                   "started)", backlog.legs)
    if idle is not None:
        print_idle(idle)
        print_trace(f"idle ('/deliv' = per second of the {idle.seconds:.0f} s)", idle.trace,
                    round(idle.seconds))
    print_cpu(cpu_rows)
    pg_rows = [(p.name, p.pg, len(p.receipts)) for p in phases]
    if backlog is not None:
        pg_rows.append((f"backlog drain ({backlog.total:,})", backlog.pg,
                        backlog.delivered + backlog.leftover))
    print_pg(pg_rows)
    for p in phases:
        print_trace(p.name, p.trace, len(p.receipts))
    if backlog is not None:
        print_trace("backlog drain", backlog.trace, backlog.delivered + backlog.leftover)
    print_targets(results)
    print(f"\nlogs: {cluster.logs}" + ("" if opts.workdir else " (deleted at exit; "
                                         "keep them with --workdir DIR)"))


def env_pair(raw: str) -> tuple[str, str]:
    """``POSTWIRE_NAME=value`` -> ``(name, value)`` (an argparse type)."""
    name, sep, value = raw.partition("=")
    if not sep or not name.startswith("POSTWIRE_"):
        raise argparse.ArgumentTypeError("expected POSTWIRE_NAME=value")
    return name, value


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="End-to-end delivery benchmark (prints tables).")
    p.add_argument("--phases", type=lambda s: s.split(","), default=list(PHASES),
                   help=f"comma-separated subset of {','.join(PHASES)}")
    p.add_argument("--duration", type=float, default=30.0, help="sustained phase, seconds")
    p.add_argument("--rate", type=float, default=2400.0,
                   help="sustained offered events/s (above the 2,000/s target; far above it, "
                        "the generator and ingest take the cores the delivery needs)")
    p.add_argument("--batch-size", type=int, default=50, help="events per batch request")
    p.add_argument("--max-outstanding", type=int, default=16, help="pending ingest requests")
    p.add_argument("--warm", type=float, default=5.0, help="seconds not counted at the start")
    p.add_argument("--latency-rate", type=float, default=200.0)
    p.add_argument("--latency-duration", type=float, default=15.0)
    p.add_argument("--idle-duration", type=float, default=20.0, help="idle phase, seconds")
    p.add_argument("--idle-quiet", type=float, default=5.0,
                   help="seconds of quiet before the idle phase is measured")
    p.add_argument("--ceiling-duration", type=float, default=10.0)
    p.add_argument("--ceiling-concurrency", type=int, default=16)
    p.add_argument("--backlog", type=int, default=100_000, help="deliveries in the backlog")
    p.add_argument("--backlog-timeout", type=float, default=180.0)
    p.add_argument("--drain-timeout", type=float, default=60.0,
                   help="max wait for deliveries after an offer phase")
    p.add_argument("--endpoints", type=int, default=10)
    p.add_argument("--max-in-flight", type=int, default=100, help="per endpoint (1..1000)")
    p.add_argument("--payload-bytes", type=int, default=200)
    p.add_argument("--dispatchers", type=int, default=1)
    p.add_argument("--ingest-procs", type=int, default=1)
    p.add_argument("--partitions", type=int, default=16)
    p.add_argument("--pool-size", type=int, default=10, help="POSTWIRE_DB_POOL_SIZE")
    p.add_argument("--dispatcher-env", type=env_pair, action="append", default=[],
                   metavar="POSTWIRE_X=V", help="extra dispatcher setting (repeatable)")
    p.add_argument("--ingest-env", type=env_pair, action="append", default=[],
                   metavar="POSTWIRE_X=V", help="extra ingest setting (repeatable)")
    p.add_argument("--py-spy", action="store_true",
                   help="py-spy record each dispatcher during the sustained phase and the first "
                        "30 s of the backlog drain (speedscope files in the logs)")
    p.add_argument("--pg-trace", action="store_true",
                   help="log every statement during the measured phases and group them by "
                        "transaction (costs CPU: diagnosis only)")
    p.add_argument("--kafka-bootstrap", default=None,
                   help="use this running Kafka (e.g. real Apache Kafka) instead of the "
                        "embedded broker, which then only idles")
    p.add_argument("--kafka-pid", type=int, default=0,
                   help="with --kafka-bootstrap: the broker's PID, so its CPU is the "
                        "'broker' column")
    p.add_argument("--workdir", default=None, help="keep data and logs here (wiped first)")
    opts = p.parse_args(argv)
    unknown = set(opts.phases) - set(PHASES)
    if unknown:
        p.error(f"unknown phases: {', '.join(sorted(unknown))}")
    return opts


def git_state() -> str:
    """Commit and whether services/ or shared/ have uncommitted changes (they move fast)."""
    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], capture_output=True, text=True, timeout=10,
                                  check=False).stdout.strip()
        except OSError:
            return ""
    dirty = git("status", "--porcelain", "--", "services", "shared").splitlines()
    digest = hashlib.sha1()
    for path in sorted([*Path("services").rglob("*.py"), *Path("shared").rglob("*.py"),
                        *Path("shared").rglob("*.sql")]):
        digest.update(str(path).encode() + b"\0" + path.read_bytes())
    return (f"{git('rev-parse', '--short', 'HEAD') or 'unknown'}"
            + (f" + uncommitted changes in {len(dirty)} services/shared files" if dirty else "")
            + f"; services+shared content sha1 {digest.hexdigest()[:12]}")


def _interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def start_run(module: str) -> str:
    """What every benchmark run does first: Ctrl-C, SIGTERM and SIGHUP made to unwind through
    the finally blocks that stop every process the run starts (SIGINT is re-armed: a shell may
    start background jobs with it ignored); the command, the code (:func:`git_state`, returned
    so the end can compare) and how busy the machine already is, printed."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _interrupt)
    print(f"command: {' '.join([Path(sys.executable).name, '-m', module, *sys.argv[1:]])}")
    code = git_state()
    print(f"code: {code}")
    busy = machine_busy_seconds()
    time.sleep(2.0)
    print(f"machine busy before start: {(machine_busy_seconds() - busy) / 2.0:.2f} cores "
          f"(other people's work on this machine skews every number below)")
    return code


def warn_if_code_changed(code: str, what: str) -> None:
    """Say so when services/ or shared/ differ from ``code`` (:func:`start_run`): ``what``
    may have run newer code than the run started with."""
    if git_state() != code:
        print(f"WARNING: services/ or shared/ changed during the run; {what} may have run "
              "newer code")


def stack_env(dsn: str, bootstrap: str, topic_prefix: str, opts: argparse.Namespace
              ) -> dict[str, str]:
    """The services' environment: ``opts.partitions`` and ``opts.pool_size`` apply."""
    return {"POSTWIRE_DATABASE_URL": dsn, "POSTWIRE_KAFKA_BOOTSTRAP": bootstrap,
            "POSTWIRE_TOPIC_PREFIX": topic_prefix, "POSTWIRE_API_KEYS": API_KEY,
            "POSTWIRE_ALLOW_PRIVATE_TARGETS": "true",
            "POSTWIRE_KAFKA_PARTITIONS": str(opts.partitions),
            "POSTWIRE_DB_POOL_SIZE": str(opts.pool_size), "POSTWIRE_LOG_LEVEL": "WARNING"}


def main(argv: list[str] | None = None) -> None:
    opts = parse_args(argv)
    code = start_run("bench.e2e")
    with workdir(opts.workdir) as base, EmbeddedStack(base_dir=base) as stack:
        dsn = asyncio.run(_prepare_db(stack))
        env = stack_env(dsn, opts.kafka_bootstrap or stack.kafka_bootstrap, "bench.", opts)
        cluster = Cluster(stack, dsn, env, base / "logs", opts)
        try:
            cluster.receiver.start()
            cluster.start_services()
            create_endpoints(cluster)
            measure(cluster)
        finally:
            cluster.stop()
    warn_if_code_changed(code, "later phases (the backlog restarts the dispatchers)")


if __name__ == "__main__":
    main()
