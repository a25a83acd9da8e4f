"""Helpers for the end-to-end benchmark: load generation (in a child process), /proc readings,
Prometheus scraping and percentiles. Nothing here asserts; callers print what they measure.

Load generation runs in a spawned process so it never shares an event loop (or a core's worth
of GIL) with the parent. Two shapes:

- :func:`_offer`: open loop at a fixed rate. Every ``per_request / rate`` seconds one request
  (one event, or a batch of ``per_request``) is sent, whatever the previous ones are doing; at
  most ``max_outstanding`` requests are pending, and a tick that finds them all pending is
  skipped and counted (so ``offered`` is honest when ingest cannot keep up).
- :func:`_bulk`: closed loop, ``concurrency`` workers posting batches as fast as they are
  answered, until ``total`` events are accepted (the backlog phase).
- :func:`_ceiling`: a bare aiohttp client posting one body to a URL at ``concurrency``.
- :func:`_probe`: not load: a group-less Kafka consumer noting when each delivery message
  became readable (to split accept-to-receive latency into its legs).

Each returns a :class:`LoadResult`; accepted events carry their id and the wall-clock time
(``time.time()``) at which their 202 was read.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import re
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import uvloop

API_KEY = "bench-key-0001"
AUTH = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}


# ----------------------------------------------------------------- load generation (child)

@dataclass(frozen=True)
class EventShape:
    """What to post: ``account_id``, event type ``{type_prefix}{n % types}``, data of about
    ``payload_bytes`` (so each event matches exactly one of ``types`` endpoints)."""

    account_id: str
    type_prefix: str
    types: int
    payload_bytes: int = 200


def make_event(shape: EventShape, n: int) -> dict[str, Any]:
    pad = "x" * max(0, shape.payload_bytes - 120)
    return {"account_id": shape.account_id, "type": f"{shape.type_prefix}{n % shape.types}",
            "data": {"seq": n, "invoice": f"in_{n:09d}", "amount": n % 10000,
                     "currency": "eur", "note": pad}}


@dataclass
class LoadResult:
    """What a load process did. Times are wall clock (``time.time()``)."""

    started: float = 0.0
    ended: float = 0.0                  # when the last request was sent (open loop)
    offered: int = 0                    # events put in requests
    skipped: int = 0                    # events of ticks skipped (all requests pending)
    errors: int = 0                     # events in requests (or items) not answered 202
    accepted: list[tuple[str, float]] = field(default_factory=list)  # (event id, 202 time)
    request_s: list[float] = field(default_factory=list)             # request latencies
    requests: int = 0
    cpu_s: float = 0.0                  # CPU the load process used


async def _post_events(http: aiohttp.ClientSession, url: str, events: list[dict[str, Any]],
                       batch: bool, out: LoadResult) -> None:
    body = orjson.dumps({"events": events} if batch else events[0])
    start = time.perf_counter()
    try:
        async with http.post(url, data=body) as resp:
            raw = await resp.read()
            now = time.time()
            status = resp.status
    except (aiohttp.ClientError, OSError, TimeoutError):
        out.errors += len(events)
        return
    out.request_s.append(time.perf_counter() - start)
    out.requests += 1
    if status != 202:
        out.errors += len(events)
        return
    parsed = orjson.loads(raw)
    items = parsed["data"] if batch else [parsed]
    for item in items:
        if "id" in item:
            out.accepted.append((item["id"], now))
        else:
            out.errors += 1


async def _offer(url: str, shape: EventShape, rate: float, per_request: int,
                 duration_s: float, max_outstanding: int, first_seq: int) -> LoadResult:
    out = LoadResult()
    batch = per_request > 1
    target = f"{url}/v1/events/batch" if batch else f"{url}/v1/events"
    connector = aiohttp.TCPConnector(limit=max_outstanding)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=connector, headers=AUTH, timeout=timeout) as http:
        pending: set[asyncio.Task[None]] = set()
        interval = per_request / rate
        ticks = max(1, int(duration_s / interval))
        out.started = time.time()
        t0 = time.perf_counter()
        for k in range(ticks):
            delay = t0 + k * interval - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            if len(pending) >= max_outstanding:
                out.skipped += per_request
                continue
            seq = first_seq + k * per_request
            events = [make_event(shape, seq + i) for i in range(per_request)]
            out.offered += per_request
            task = asyncio.create_task(_post_events(http, target, events, batch, out))
            pending.add(task)
            task.add_done_callback(pending.discard)
        out.ended = time.time()
        if pending:
            await asyncio.gather(*pending)
    return out


async def _bulk(url: str, shape: EventShape, total: int, per_request: int, concurrency: int,
                first_seq: int) -> LoadResult:
    out = LoadResult()
    timeout = aiohttp.ClientTimeout(total=120)
    next_seq = [first_seq]
    end_seq = first_seq + total

    async def worker(http: aiohttp.ClientSession) -> None:
        while next_seq[0] < end_seq:
            seq = next_seq[0]
            count = min(per_request, end_seq - seq)
            next_seq[0] += count
            events = [make_event(shape, seq + i) for i in range(count)]
            out.offered += count
            await _post_events(http, f"{url}/v1/events/batch", events, True, out)

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, headers=AUTH, timeout=timeout) as http:
        out.started = time.time()
        await asyncio.gather(*(worker(http) for _ in range(concurrency)))
        out.ended = time.time()
    return out


async def _ceiling(url: str, body: bytes, headers: dict[str, str], concurrency: int,
                   duration_s: float) -> LoadResult:
    """Same body, fresh ``webhook-id`` per request (so the receiver records each one)."""
    out = LoadResult()
    counter = [0]
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as http:
        async def worker(deadline: float) -> None:
            while time.perf_counter() < deadline:
                counter[0] += 1
                hdrs = {**headers, "webhook-id": f"ceil_{counter[0]}"}
                start = time.perf_counter()
                try:
                    async with http.post(url, data=body, headers=hdrs) as resp:
                        await resp.read()
                        ok = resp.status < 300
                except (aiohttp.ClientError, OSError):
                    ok = False
                if ok:
                    out.request_s.append(time.perf_counter() - start)
                    out.requests += 1
                else:
                    out.errors += 1

        warm = time.perf_counter() + 1.0
        await asyncio.gather(*(worker(warm) for _ in range(concurrency)))
        out.requests, out.errors, out.request_s = 0, 0, []
        out.started = time.time()
        deadline = time.perf_counter() + duration_s
        await asyncio.gather(*(worker(deadline) for _ in range(concurrency)))
        out.ended = time.time()
    return out


PROBE_FETCH_WAIT_MS = 500  # a long poll: the probe must not load the broker it measures


async def _probe(bootstrap: str, topic: str, duration_s: float) -> LoadResult:
    """Read ``topic`` from its end for ``duration_s`` as a group-less consumer; ``accepted``
    gets ``(event id, record timestamp)`` and ``request_s`` the matching arrival times.

    It long-polls (``PROBE_FETCH_WAIT_MS``): polling every 10 ms cost the broker about 0.08
    cores on Tansu, which answers a waiting fetch only at its deadline, and that landed in the
    stack's broker column. So the arrival time can be late by up to the deadline on Tansu and
    says nothing about the stack; only the record timestamp (the producer's send) is a
    measurement, and which events went through Kafka at all."""
    from aiokafka import AIOKafkaConsumer

    from shared.core.delivery_message import decode_delivery_message

    out = LoadResult()
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                                enable_auto_commit=False,
                                fetch_max_wait_ms=PROBE_FETCH_WAIT_MS)
    await consumer.start()
    try:
        from aiokafka import AIOKafkaProducer, TopicPartition
        # the consumer's metadata may not list the topic yet (real Kafka): a producer's
        # partitions_for waits for it
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
        await producer.start()
        try:
            partitions = [TopicPartition(topic, p)
                          for p in sorted(await producer.partitions_for(topic))]
        finally:
            await producer.stop()
        consumer.assign(partitions)
        await consumer.seek_to_end(*partitions)
        out.started = time.time()
        deadline = time.perf_counter() + duration_s
        while time.perf_counter() < deadline:
            batches = await consumer.getmany(timeout_ms=PROBE_FETCH_WAIT_MS + 100,
                                             max_records=2000)
            now = time.time()
            for records in batches.values():
                for record in records:
                    event_id = decode_delivery_message(record.value).event_id
                    out.accepted.append((event_id, record.timestamp / 1000.0))
                    out.request_s.append(now)
        out.ended = time.time()
    finally:
        await consumer.stop()
    return out


_KINDS: dict[str, Callable[..., Any]] = {"offer": _offer, "bulk": _bulk, "ceiling": _ceiling,
                                         "probe": _probe}


def child_setup() -> None:
    """In a spawned helper process: leave Ctrl-C to the parent (which stops us by PID), and
    die with the parent even if it is killed outright (parent-death signal)."""
    from deploy.embedded.procs import die_with_parent

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    die_with_parent(signal.SIGTERM)


def _load_main(kind: str, kwargs: dict[str, Any], out: Any) -> None:
    child_setup()
    result: LoadResult = uvloop.run(_KINDS[kind](**kwargs))
    result.cpu_s = time.process_time()
    out.send(result)


class LoadProcess:
    """One load shape (``offer``, ``bulk``, ``ceiling``, ``probe``) in a spawned process."""

    def __init__(self, kind: str, **kwargs: Any) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.kind = kind
        self._pipe, child_end = ctx.Pipe(duplex=False)
        self._proc = ctx.Process(target=_load_main, args=(kind, kwargs, child_end),
                                 name=f"bench-{kind}", daemon=True)
        self._proc.start()
        child_end.close()

    def result(self, timeout_s: float) -> LoadResult:
        """Wait for the result; RuntimeError if none within ``timeout_s``. Stops the process."""
        try:
            if not self._pipe.poll(timeout_s):
                raise RuntimeError(f"load process ({self.kind}) gave no result within "
                                   f"{timeout_s:.0f}s")
            result: LoadResult = self._pipe.recv()
            self._proc.join(10)
            return result
        finally:
            self.stop()

    def stop(self) -> None:
        """Terminate by PID (then kill) if still running. Idempotent."""
        if self._proc.is_alive():
            self._proc.terminate()
            self._proc.join(5)
        if self._proc.is_alive():
            self._proc.kill()
            self._proc.join(5)


def merge_results(results: list[LoadResult]) -> LoadResult:
    """One result for load processes that ran side by side: from the first start to the last
    end, counts and CPU summed, accepted events and request latencies pooled."""
    out = LoadResult(started=min((r.started for r in results), default=0.0),
                     ended=max((r.ended for r in results), default=0.0))
    for r in results:
        out.offered += r.offered
        out.skipped += r.skipped
        out.errors += r.errors
        out.requests += r.requests
        out.cpu_s += r.cpu_s
        out.accepted.extend(r.accepted)
        out.request_s.extend(r.request_s)
    return out


def run_load(kind: str, timeout_s: float, **kwargs: Any) -> LoadResult:
    """Run one load shape in a fresh process and wait for its result (see LoadProcess)."""
    return LoadProcess(kind, **kwargs).result(timeout_s)


# ----------------------------------------------------------------- /proc readings

def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds used so far by ``pids`` (0 for those gone)."""
    ticks = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            continue
    return ticks / os.sysconf("SC_CLK_TCK")


def context_switches(pids: list[int]) -> int:
    """Voluntary + involuntary context switches so far of every thread of ``pids`` (0 for
    those gone): each wake-up of a sleeping thread (a timer, a poll, a socket read) counts
    one, so on an idle process this is its wake-ups, and it does not depend on how busy the
    rest of the machine is."""
    total = 0
    for pid in pids:
        try:
            tasks = list(Path(f"/proc/{pid}/task").iterdir())
        except OSError:
            continue
        for task in tasks:
            try:
                for line in (task / "status").read_text().splitlines():
                    if "ctxt_switches:" in line:
                        total += int(line.split()[1])
            except (OSError, IndexError, ValueError):
                continue
    return total


def process_tree(pid: int) -> list[int]:
    """``pid`` and its direct children (Postgres backends are children of the postmaster)."""
    found = [pid]
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if ppid == pid:
            found.append(int(entry.name))
    return found


def memory_kib(pid: int, field_name: str) -> int:
    """``VmRSS`` / ``VmHWM`` (peak RSS) of ``pid`` in KiB; 0 when unreadable."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{field_name}:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine spent not idle (all cores), from ``/proc/stat``."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return 0.0
    busy = sum(fields[:8]) - fields[3] - fields[4]  # minus idle and iowait
    return busy / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """CPU used by named groups of processes between ``start`` and ``stop``, in cores.

    ``other`` is what the rest of the machine used meanwhile (other users' work skews results).
    """

    def __init__(self, groups: dict[str, Callable[[], list[int]]]) -> None:
        self._groups = groups
        self._before: dict[str, float] = {}
        self._machine = 0.0
        self._t0 = 0.0
        self.elapsed = 0.0
        self.cores: dict[str, float] = {}

    def start(self) -> None:
        self._t0 = time.perf_counter()
        self._before = {name: cpu_seconds(pids()) for name, pids in self._groups.items()}
        self._machine = machine_busy_seconds()

    def stop(self, extra: dict[str, float] | None = None) -> dict[str, float]:
        """Cores per group (plus ``extra`` CPU seconds, e.g. a finished load process)."""
        elapsed = max(time.perf_counter() - self._t0, 1e-9)
        self.elapsed = elapsed
        self.cores = {name: (cpu_seconds(pids()) - self._before[name]) / elapsed
                      for name, pids in self._groups.items()}
        for name, seconds in (extra or {}).items():
            self.cores[name] = seconds / elapsed
        machine = (machine_busy_seconds() - self._machine) / elapsed
        self.cores["other"] = max(0.0, machine - sum(self.cores.values()))
        return self.cores


# ----------------------------------------------------------------- metrics and statistics

def parse_prometheus(text: str) -> dict[str, float]:
    """``{'name{labels}': value}`` of every sample line (comments skipped)."""
    values: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name, _, value = line.rpartition(" ")
        try:
            values[name] = float(value)
        except ValueError:
            continue
    return values


def scrape(base_urls: list[str]) -> dict[str, float]:
    """Sum of the samples of every ``{base}/metrics`` (missing services count as empty)."""
    import urllib.error
    import urllib.request
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    total: dict[str, float] = {}
    for base in base_urls:
        try:
            with opener.open(f"{base}/metrics", timeout=5) as response:
                text = response.read().decode()
        except (urllib.error.URLError, OSError):
            continue
        for key, value in parse_prometheus(text).items():
            total[key] = total.get(key, 0.0) + value
    return total


def delta(after: dict[str, float], before: dict[str, float], prefix: str) -> dict[str, float]:
    """Non-zero increases of the samples whose name starts with ``prefix``."""
    return {k: v - before.get(k, 0.0) for k, v in after.items()
            if k.startswith(prefix) and v - before.get(k, 0.0) != 0}


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) by nearest rank; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


# ----------------------------------------------------------------- Postgres observation

_ACTIVITY_SQL = """
SELECT coalesce(wait_event_type, 'CPU') AS wt, coalesce(wait_event, 'running') AS we,
       left(regexp_replace(query, '\\s+', ' ', 'g'), 130) AS q
FROM pg_stat_activity
WHERE datname = current_database() AND state = 'active' AND pid <> pg_backend_pid()
"""

_TABLES_SQL = """
SELECT relname, n_tup_ins, n_tup_upd, n_tup_del FROM pg_stat_user_tables
"""

_DB_SQL = """
SELECT xact_commit, deadlocks, pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0') AS wal,
       (SELECT coalesce(sum(fsyncs), 0) FROM pg_stat_io WHERE object = 'wal') AS wal_sync
FROM pg_stat_database WHERE datname = current_database()
"""


async def pg_counters(dsn: str) -> dict[str, float]:
    """Cumulative counters: ``commits`` (every transaction, read-only ones included),
    ``wal_syncs`` (WAL fsyncs, Postgres 18's ``pg_stat_io``: what commits wait for; whole
    cluster),
    ``deadlocks``, ``wal_bytes`` and, per table,
    ``<table>.ins|upd|del`` (Postgres publishes them within about a second)."""
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("SELECT pg_stat_clear_snapshot()")
        db = await conn.fetchrow(_DB_SQL)
        out = {"commits": float(db["xact_commit"]), "deadlocks": float(db["deadlocks"]),
               "wal_bytes": float(db["wal"]), "wal_syncs": float(db["wal_sync"] or 0)}
        for r in await conn.fetch(_TABLES_SQL):
            for col, short in (("n_tup_ins", "ins"), ("n_tup_upd", "upd"), ("n_tup_del", "del")):
                out[f"{r['relname']}.{short}"] = float(r[col])
        return out
    finally:
        await conn.close()


_BACKENDS_SQL = """
SELECT pid, coalesce(nullif(application_name, ''), backend_type) AS who FROM pg_stat_activity
"""


async def pg_backends(dsn: str) -> dict[int, str]:
    """Every Postgres process the server lists (client backends and its own background
    workers), by PID: the client's ``application_name``, else the backend type."""
    import asyncpg

    conn = await asyncpg.connect(dsn, server_settings={"application_name": "bench-observer"})
    try:
        return {r["pid"]: r["who"] for r in await conn.fetch(_BACKENDS_SQL)}
    finally:
        await conn.close()


class PgCpuByBackend:
    """Postgres CPU between ``start`` and ``stop`` per kind of backend, in cores: which
    service's connections (their ``application_name``) or which background process
    (``walwriter``, ``checkpointer`` ...) spent it. A backend that started meanwhile counts
    whole; one that ended meanwhile is lost (pools keep theirs, so neither is common)."""

    def __init__(self, dsn: str, postmaster_pid: int = 0) -> None:
        """``postmaster_pid``: also count the server's processes that ``pg_stat_activity``
        does not list (the postmaster itself, ...), named by their process title."""
        self._dsn = dsn
        self._postmaster_pid = postmaster_pid
        self._before: dict[int, float] = {}
        self._t0 = 0.0

    def _processes(self) -> dict[int, str]:
        listed = asyncio.run(pg_backends(self._dsn))
        if self._postmaster_pid:
            for pid in process_tree(self._postmaster_pid):
                if pid not in listed:
                    listed[pid] = _process_title(pid)
        return listed

    def start(self) -> None:
        self._before = {pid: cpu_seconds([pid]) for pid in self._processes()}
        self._t0 = time.perf_counter()

    def stop(self) -> dict[str, float]:
        elapsed = max(time.perf_counter() - self._t0, 1e-9)
        cores: dict[str, float] = {}
        for pid, who in self._processes().items():
            used = cpu_seconds([pid]) - self._before.get(pid, 0.0)
            cores[who] = cores.get(who, 0.0) + used / elapsed
        return dict(sorted(cores.items(), key=lambda kv: -kv[1]))


def _process_title(pid: int) -> str:
    """A Postgres process's title (``postgres: checkpointer`` ...), without its arguments."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return "gone"
    return raw.strip()[:40] or "unknown"


class PgWatcher:
    """Samples ``pg_stat_activity`` of one database every ``interval_s`` in a thread.

    ``waits`` counts active backends by wait event per sample (``CPU/running`` = on CPU or
    runnable); ``lock_queries`` counts the statements seen waiting on a lock.
    """

    def __init__(self, dsn: str, interval_s: float = 0.05) -> None:
        import collections
        import threading

        self._dsn = dsn
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._connected = threading.Event()
        self.backend_pid = 0   # the watcher's own backend, known once start() returned
        self._thread = threading.Thread(target=self._run, name="pg-watcher", daemon=True)
        self.samples = 0
        self.waits: collections.Counter[str] = collections.Counter()
        self.lock_queries: collections.Counter[str] = collections.Counter()

    def start(self) -> None:
        """Start sampling; returns once connected (or after 10 s), so that
        ``backend_pid`` can be left out of the Postgres CPU: the watcher's own queries are
        the benchmark's cost, not the stack's."""
        self._thread.start()
        self._connected.wait(10)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        asyncio.run(self._sample())

    async def _sample(self) -> None:
        import asyncpg

        try:
            conn = await asyncpg.connect(self._dsn,
                                         server_settings={"application_name": "bench-observer"})
            self.backend_pid = conn.get_server_pid()
        finally:
            self._connected.set()
        try:
            while not self._stop.is_set():
                for r in await conn.fetch(_ACTIVITY_SQL):
                    self.waits[f"{r['wt']}/{r['we']}"] += 1
                    if r["wt"] == "Lock":
                        self.lock_queries[r["q"]] += 1
                self.samples += 1
                await asyncio.sleep(self._interval_s)
        finally:
            await conn.close()

    def busy(self) -> dict[str, float]:
        """Mean number of active backends per wait event (i.e. backends busy that way)."""
        return {k: v / max(self.samples, 1) for k, v in self.waits.most_common()}


# ----------------------------------------------------------------- Postgres statement trace

_LOG_LINE = re.compile(
    r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}) \w+ \[(\d+)\] LOG:  duration: ([\d.]+) ms  "
    r"(statement|execute [^:]*|parse [^:]*|bind [^:]*): (.*)$")


@dataclass
class TxnStats:
    """Transactions (BEGIN..COMMIT on one backend) of one kind, or autocommit statements."""

    count: int = 0
    statements: int = 0          # executed statements inside, BEGIN/COMMIT excluded
    server_ms: float = 0.0       # time Postgres spent executing them (COMMIT excluded)
    commit_ms: float = 0.0       # COMMIT (the WAL flush)
    wall_ms: float = 0.0         # first statement's start to COMMIT's end, as logged
    by_statement: dict[str, list[float]] = field(default_factory=dict)  # prefix -> [n, ms]


def _kind(sql: str) -> str:
    """A short, readable name for the transaction that starts with ``sql``."""
    flat = " ".join(sql.split())
    known = (("probe_until, rate_next_free_at FROM endpoint_health", "dispatcher claim"),
             ("INSERT INTO endpoint_health", "dispatcher claim (new endpoint)"),
             ("statement_timestamp() AS now FROM endpoint_health", "dispatcher outcome"),
             ("WITH due AS", "scheduler (due)"), ("WITH stuck AS", "sweeper"),
             ("FROM outbox", "outbox relay"), ("WITH ev AS", "ingest group commit"))
    for marker, name in known:
        if marker in flat:
            return name
    return flat[:60]


def parse_pg_trace(text: str) -> dict[str, TxnStats]:
    """Group a ``log_min_duration_statement = 0`` log by transaction kind.

    Parse/bind lines are ignored (asyncpg prepares once per connection); an ``execute`` or a
    simple ``statement`` is one round trip. Statements outside BEGIN..COMMIT are reported under
    ``autocommit: <statement>``. A simple query that starts with BEGIN opens a transaction
    whatever follows in it (the claim's ``BEGIN; SET LOCAL ...``); one that ends with COMMIT
    closes it (the claim's ``DELETE ...; COMMIT``), its statement counted with no time of its
    own: the round trip's duration goes to the commit (the WAL flush dominates it).
    """
    stats: dict[str, TxnStats] = {}
    open_txn: dict[str, tuple[float, list[tuple[str, float]]]] = {}
    for stamp, pid, ms, sql in _entries(text):
        end = _stamp_s(stamp) * 1000
        upper = sql.upper()
        compound_commit = upper.rstrip("; ").endswith("; COMMIT")
        if upper.startswith("BEGIN"):
            open_txn[pid] = (end - ms, [])
        elif (upper.startswith(("COMMIT", "ROLLBACK")) or compound_commit) \
                and pid in open_txn:
            start, body = open_txn.pop(pid)
            if compound_commit:
                body.append((sql.rsplit(";", 2)[0], 0.0))
            st = stats.setdefault(_kind(body[0][0]) if body else "empty", TxnStats())
            st.count += 1
            st.statements += len(body)
            st.server_ms += sum(d for _, d in body)
            st.commit_ms += ms
            st.wall_ms += end - start
            for stmt, d in body:
                acc = st.by_statement.setdefault(stmt[:70], [0.0, 0.0])
                acc[0] += 1
                acc[1] += d
        elif pid in open_txn:
            open_txn[pid][1].append((sql, ms))
        else:
            st = stats.setdefault(f"autocommit: {sql[:50]}", TxnStats())
            st.count += 1
            st.statements += 1
            st.server_ms += ms
            st.wall_ms += ms
    return stats


def _entries(text: str) -> list[tuple[str, str, float, str]]:
    """``(timestamp, pid, duration ms, statement)`` of each execute/simple statement, with
    continuation lines of multi-line SQL joined (first 300 characters)."""
    out: list[tuple[str, str, float, str]] = []
    current: list[str] | None = None
    for line in text.splitlines():
        m = _LOG_LINE.match(line)
        if m is None:
            if current is not None and line[:1] in ("\t", " "):
                current.append(line.strip())
                continue
            current = None
            continue
        if current is not None:
            out[-1] = (*out[-1][:3], " ".join(" ".join(current).split())[:300])
        current = None
        if m.group(4).startswith(("parse", "bind")):
            continue
        out.append((m.group(1), m.group(2), float(m.group(3)), ""))
        current = [m.group(5)]
    if current is not None and out:
        out[-1] = (*out[-1][:3], " ".join(" ".join(current).split())[:300])
    return out


def _stamp_s(stamp: str) -> float:
    from datetime import datetime
    return datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S.%f").timestamp()
