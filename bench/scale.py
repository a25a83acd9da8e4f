"""Scale-out benchmark: the sustained phase of :mod:`bench.e2e` for several process counts.

    .venv/bin/python -m bench.scale --configs 1x1,2x2,4x2,8x4 --duration 15

Each configuration ``DxI`` (D dispatchers, I ingest processes; ``DxI@RATE`` also sets its
offered events/s, else ``--rate-per-dispatcher`` x D) gets fresh service processes, its own
account with ``--endpoints`` endpoints (endpoint *i* subscribed to ``bench.t<i>`` only, each
``max_in_flight`` ``--max-in-flight``, so deliveries = events), a warm-up, and then events
offered open-loop for ``--duration`` s as batches of ``--batch-size`` (``--payload-bytes`` of
data each), by as many generator processes as needed so that the generator is never the limit:
``--generators``, or by default one per ``--generator-rate`` events/s and at least one per
ingest process; generator *k* posts to ingest *k mod I*. Then the deliveries are waited for
(``--drain-timeout``) and everything of the configuration is stopped by PID.

Per configuration it prints (the pieces are :mod:`bench.e2e`'s and :mod:`bench._common`'s):

- offered, accepted and delivered per second, accept-to-receive p50/p99 (receiver clock minus
  the 202 at the generator, events accepted after ``--warm`` s), missing and duplicates;
- each generator's headroom: its target and achieved offer rate, skipped ticks (all its
  ``--max-outstanding`` requests were pending: ingest, not the generator, was the limit), its
  CPU in cores (near 1: the generator itself was) and its ingest request latency;
- CPU in cores per component (ingest, dispatcher, admin, Postgres, broker, receiver,
  generator) and in milliseconds per delivery (over the deliveries received while load was
  offered);
- Postgres: the wait profile (mean active backends per wait event, ``pg_stat_activity``
  sampled every 50 ms), the statements seen waiting on locks, and the cost per delivery: WAL
  bytes, row writes (inserts, updates, deletes, per table), commits and WAL fsyncs.

It ends with a summary table, one row per configuration, with a ``delivered/s`` column.

Where it runs: by default on an embedded Postgres (fsync on) and Tansu broker of its own. With
``POSTWIRE_DATABASE_URL`` and/or ``POSTWIRE_KAFKA_BOOTSTRAP`` set (or ``--kafka-bootstrap``),
it uses those instead and does not start them (an embedded stack still starts for the part
not given, and then only idles); the database is migrated, each run uses a fresh account per
configuration and a fresh topic prefix. The CPU of an external Postgres or broker is reported
only with ``--postgres-pid`` / ``--kafka-pid PID[,PID...]`` (those processes and their
children; one PID per Kafka node). Services,
receiver and generators always run on this machine, on 127.0.0.1.

Nothing here asserts: the script prints and exits non-zero only when something crashes.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import uuid
from dataclasses import dataclass
from pathlib import Path

from bench._common import percentile
from bench.e2e import (
    STACK,
    Cluster,
    Phase,
    create_endpoints,
    env_pair,
    fmt,
    print_cpu,
    print_offer_table,
    print_pg,
    run_offer,
    settle,
    stack_cores,
    stack_env,
    start_run,
    warm_up,
    warn_if_code_changed,
    workdir,
)
from deploy.embedded.stack import EmbeddedStack
from shared.adapters.pg.migrations import apply_migrations

COMPONENTS = ("ingest", "dispatcher", "admin", "postgres", "broker", "receiver", "loadgen")


@dataclass(frozen=True)
class Config:
    """One configuration: process counts and the offered events per second."""

    dispatchers: int
    ingest: int
    rate: float

    @property
    def label(self) -> str:
        return f"{self.dispatchers}x{self.ingest}"


def parse_configs(raw: str, rate_per_dispatcher: float) -> list[Config]:
    """``"1x1,2x2,8x4@24000"`` -> configurations; ValueError on a malformed item."""
    configs = []
    for item in (part.strip() for part in raw.split(",") if part.strip()):
        shape, _, rate = item.partition("@")
        d, sep, i = shape.partition("x")
        if not sep or not d.isdigit() or not i.isdigit() or int(d) < 1 or int(i) < 1:
            raise ValueError(f"configuration {item!r}: expected DxI or DxI@RATE, e.g. 4x2")
        offered = float(rate) if rate else rate_per_dispatcher * int(d)
        if offered <= 0:
            raise ValueError(f"configuration {item!r}: the rate must be positive")
        configs.append(Config(int(d), int(i), offered))
    if not configs:
        raise ValueError("no configuration given")
    return configs


def generator_count(config: Config, opts: argparse.Namespace) -> int:
    """``--generators`` when given, else one per ``--generator-rate`` events/s, at least one
    per ingest process (so every ingest gets load)."""
    if opts.generators:
        return int(opts.generators)
    return max(config.ingest, math.ceil(config.rate / float(opts.generator_rate)))


@dataclass
class Outcome:
    """What one configuration measured."""

    config: Config
    phase: Phase

    def delivered_while_offered(self) -> float:
        """Deliveries per second received while load was offered (the CPU meter's window)."""
        lo, hi = self.phase.load.started, self.phase.load.ended
        return sum(1 for t in self.phase.receipts.values() if lo <= t <= hi) / max(hi - lo, 1e-9)

    def cpu_ms_per_delivery(self) -> dict[str, float]:
        per_s = self.delivered_while_offered()
        return {name: (cores * 1000 / per_s if per_s else float("nan"))
                for name, cores in self.phase.cores.items()}

    def per_delivery(self, counter: str) -> float:
        return self.phase.pg.counters.get(counter, 0.0) / max(len(self.phase.receipts), 1)

    def row_writes(self) -> dict[str, float]:
        """Inserts, updates and deletes per delivery, all tables together."""
        counters, n = self.phase.pg.counters, max(len(self.phase.receipts), 1)
        return {kind: sum(v for k, v in counters.items() if k.endswith(f".{kind}")) / n
                for kind in ("ins", "upd", "del")}


# ----------------------------------------------------------------- running

@dataclass
class Site:
    """Where configurations run: the database, the broker, and what measures their CPU."""

    stack: EmbeddedStack | None
    dsn: str
    bootstrap: str
    topic_prefix: str
    postgres_pid: int | None        # None: the embedded one; 0: not measured
    broker_pids: tuple[int, ...] | None   # the same for the broker (one per node)
    logs: Path


def run_config(site: Site, config: Config, opts: argparse.Namespace, run_id: str) -> Outcome:
    """Start the configuration's processes, measure its sustained phase, stop them all."""
    copts = argparse.Namespace(**vars(opts))
    copts.dispatchers, copts.ingest_procs = config.dispatchers, config.ingest
    copts.pg_trace, copts.py_spy = False, False
    env = {**stack_env(site.dsn, site.bootstrap, site.topic_prefix, copts),
           "POSTWIRE_KAFKA_REPLICATION_FACTOR": str(opts.replication_factor)}
    cluster = Cluster(site.stack, site.dsn, env, site.logs / config.label, copts,
                      account=f"scale_{run_id}_{config.label}", postgres_pid=site.postgres_pid,
                      broker_pids=site.broker_pids)
    cluster.logs.mkdir(parents=True, exist_ok=True)
    generators = generator_count(config, opts)
    print(f"\n{'=' * 100}\nconfiguration {config.label}: {config.dispatchers} dispatcher(s), "
          f"{config.ingest} ingest, {opts.endpoints} endpoints, {config.rate:,.0f} events/s "
          f"offered by {generators} generator(s), {opts.duration:g} s", flush=True)
    try:
        cluster.receiver.start()
        cluster.start_services()
        create_endpoints(cluster)
        warm_up(cluster)
        settle(cluster, "the sustained phase")
        phase = run_offer(cluster, f"{config.label} x{opts.batch_size} @{config.rate:g}/s",
                          config.rate, opts.batch_size, opts.duration, opts.warm, 0,
                          generators=generators)
    finally:
        cluster.stop()
    outcome = Outcome(config, phase)
    print_config(outcome)
    return outcome


async def _migrate(dsn: str) -> None:
    await apply_migrations(dsn)


def open_site(base: Path, opts: argparse.Namespace, stack: EmbeddedStack | None) -> Site:
    """The site of this run: the given database and broker, else the embedded ones."""
    given_dsn = os.environ.get("POSTWIRE_DATABASE_URL", "")
    given_kafka = opts.kafka_bootstrap or os.environ.get("POSTWIRE_KAFKA_BOOTSTRAP", "")
    if given_dsn:
        dsn = given_dsn
    else:
        assert stack is not None
        stack.postgres.create_database("bench_scale")
        dsn = stack.postgres.dsn_for("bench_scale")
    asyncio.run(_migrate(dsn))
    if given_kafka:
        bootstrap = given_kafka
    else:
        assert stack is not None
        bootstrap = stack.kafka_bootstrap
    return Site(stack, dsn, bootstrap, f"bench.scale.{uuid.uuid4().hex[:6]}.",
                opts.postgres_pid if given_dsn else None,
                tuple(opts.kafka_pids) if given_kafka else None, base / "logs")


# ----------------------------------------------------------------- printing

def print_generators(outcome: Outcome) -> None:
    phase = outcome.phase
    target = outcome.config.rate / max(len(phase.generators), 1)
    print(f"\nGenerators ({len(phase.generators)}; skipped = ticks that found all "
          f"--max-outstanding requests pending: ingest was the limit; CPU near 1 core: the "
          "generator was)")
    print(f"{'gen':>4}{'target/s':>10}{'offered/s':>11}{'accepted/s':>11}{'skipped':>9}"
          f"{'errors':>8}{'cores':>7}{'req p50 ms':>11}{'req p99 ms':>11}")
    for k, g in enumerate(phase.generators):
        seconds = max(g.ended - g.started, 1e-9)
        print(f"{k:>4}{fmt(target):>10}{fmt(g.offered / seconds):>11}"
              f"{fmt(len(g.accepted) / seconds):>11}{g.skipped:>9}{g.errors:>8}"
              f"{fmt(g.cpu_s / seconds, 2):>7}{fmt(percentile(g.request_s, 0.5) * 1000, 1):>11}"
              f"{fmt(percentile(g.request_s, 0.99) * 1000, 1):>11}")
    print(f"  verdict: {generator_verdict(outcome)}")


def generator_verdict(outcome: Outcome) -> str:
    """Whether the generators reached the offered rate, and if not, who held them back."""
    gens = outcome.phase.generators
    skipped = sum(g.skipped for g in gens)
    offered = sum(g.offered for g in gens)
    busiest = max((g.cpu_s / max(g.ended - g.started, 1e-9) for g in gens), default=0.0)
    if busiest >= 0.8:
        return (f"a generator used {busiest:.2f} cores: the generator may be the limit (use "
                "more with --generators)")
    if skipped > 0.005 * (offered + skipped):
        return (f"{skipped:,} events not offered: ingest answered too slowly to keep the "
                "rate with the allowed pending requests (ingest, not the generator, was the "
                "limit)")
    return f"the offered rate was reached (busiest generator {busiest:.2f} cores)"


def print_config(outcome: Outcome) -> None:
    phase = outcome.phase
    print_offer_table(f"Configuration {outcome.config.label} (accept = 202 at a generator, "
                      "receive = receiver clock)", [phase], None)
    print_generators(outcome)
    print_cpu([(phase.name, phase.cores, outcome.delivered_while_offered())])
    ms = outcome.cpu_ms_per_delivery()
    print("CPU ms per delivery (deliveries received while load was offered): "
          + ", ".join(f"{n} {fmt(ms.get(n, float('nan')), 3)}" for n in COMPONENTS)
          + f"; stack {fmt(sum(ms.get(n, 0.0) for n in STACK), 3)}")
    print_pg([(phase.name, phase.pg, len(phase.receipts))])
    rows = outcome.row_writes()
    print(f"Cost per delivery: WAL {fmt(outcome.per_delivery('wal_bytes'))} B, row writes "
          f"{rows['ins']:.2f} ins + {rows['upd']:.2f} upd + {rows['del']:.2f} del, commits "
          f"{outcome.per_delivery('commits'):.2f}, WAL fsyncs "
          f"{outcome.per_delivery('wal_syncs'):.3f}", flush=True)


def print_summary(outcomes: list[Outcome]) -> None:
    print(f"\n{'=' * 100}\nSummary (one row per configuration; stack = ingest + dispatcher + "
          "admin + Postgres + broker; cost columns per delivery)")
    print(f"{'config':<8}{'gens':>5}{'offered/s':>10}{'accepted/s':>11}{'delivered/s':>12}"
          f"{'p50 ms':>9}{'p99 ms':>9}{'miss':>6}{'dup':>5}{'stack c':>8}{'ms/dlv':>7}"
          f"{'WAL B':>7}{'ins/upd/del':>13}{'commits':>8}  top Postgres waits (backends)")
    for o in outcomes:
        p, rows = o.phase, o.row_writes()
        lat = p.latencies_ms()
        ms = o.cpu_ms_per_delivery()
        waits = ", ".join(f"{k} {v:.2f}" for k, v in list(p.pg.busy.items())[:3])
        print(f"{o.config.label:<8}{len(p.generators):>5}{fmt(p.load.offered / p.seconds):>10}"
              f"{fmt(len(p.load.accepted) / p.seconds):>11}{fmt(p.delivered_per_s()):>12}"
              f"{fmt(percentile(lat, 0.5), 1):>9}{fmt(percentile(lat, 0.99), 1):>9}"
              f"{p.missing():>6}{p.duplicates:>5}{fmt(stack_cores(p.cores), 2):>8}"
              f"{fmt(sum(ms.get(n, 0.0) for n in STACK), 2):>7}"
              f"{fmt(o.per_delivery('wal_bytes')):>7}"
              f"{rows['ins']:>5.1f}/{rows['upd']:.1f}/{rows['del']:.1f}"
              f"{o.per_delivery('commits'):>8.2f}  {waits}")
    print("  delivered/s counts receipts from --warm s after the first offer to the last one; "
          "p50/p99 are accept-to-receive of the events accepted in that window")


# ----------------------------------------------------------------- main

def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Scale-out benchmark (prints tables).")
    p.add_argument("--configs", default="1x1,2x2,4x2,8x4",
                   help="comma-separated DxI (dispatchers x ingest processes), each optionally "
                        "@RATE (offered events/s)")
    p.add_argument("--duration", type=float, default=15.0, help="seconds of offered load")
    p.add_argument("--rate-per-dispatcher", type=float, default=3000.0,
                   help="offered events/s per dispatcher for a configuration without @RATE")
    p.add_argument("--endpoints", type=int, default=128)
    p.add_argument("--max-in-flight", type=int, default=100, help="per endpoint (1..1000)")
    p.add_argument("--payload-bytes", type=int, default=200)
    p.add_argument("--batch-size", type=int, default=50, help="events per batch request")
    p.add_argument("--max-outstanding", type=int, default=16,
                   help="pending ingest requests per generator")
    p.add_argument("--generators", type=int, default=0,
                   help="generator processes (default: see --generator-rate)")
    p.add_argument("--generator-rate", type=float, default=4000.0,
                   help="events/s one generator is given when --generators is not set")
    p.add_argument("--warm", type=float, default=3.0, help="seconds not counted at the start")
    p.add_argument("--drain-timeout", type=float, default=60.0,
                   help="max wait for the deliveries after the offer")
    p.add_argument("--partitions", type=int, default=32)
    p.add_argument("--replication-factor", type=int, default=1,
                   help="of the topics (a 3-node Kafka with min.insync.replicas 2 needs 3: "
                        "with 1, no produce can be acknowledged)")
    p.add_argument("--pool-size", type=int, default=10, help="POSTWIRE_DB_POOL_SIZE")
    p.add_argument("--dispatcher-env", type=env_pair, action="append", default=[],
                   metavar="POSTWIRE_X=V", help="extra dispatcher setting (repeatable)")
    p.add_argument("--kafka-bootstrap", default=None,
                   help="use this running Kafka (e.g. real Apache Kafka; also "
                        "POSTWIRE_KAFKA_BOOTSTRAP) instead of the embedded broker")
    p.add_argument("--kafka-pid", dest="kafka_pids", type=_pids, default=[],
                   help="with an external Kafka: its PIDs, comma-separated (one per node), so "
                        "their CPU is the 'broker' column")
    p.add_argument("--postgres-pid", type=int, default=0,
                   help="with POSTWIRE_DATABASE_URL: the postmaster's PID, so its CPU (and its "
                        "backends') is the 'postgres' column")
    p.add_argument("--workdir", default=None, help="keep data and logs here (wiped first)")
    opts = p.parse_args(argv)
    opts.kafka_pid = 0      # bench.e2e's single-PID setting; the Site carries kafka_pids
    try:
        opts.config_list = parse_configs(opts.configs, opts.rate_per_dispatcher)
    except ValueError as exc:
        p.error(str(exc))
    return opts


def _pids(raw: str) -> list[int]:
    try:
        return [int(part) for part in raw.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError("expected PID[,PID...]") from None


def main(argv: list[str] | None = None) -> None:
    opts = parse_args(argv)
    code = start_run("bench.scale")
    external = bool(os.environ.get("POSTWIRE_DATABASE_URL")) and bool(
        opts.kafka_bootstrap or os.environ.get("POSTWIRE_KAFKA_BOOTSTRAP"))
    run_id = uuid.uuid4().hex[:6]
    outcomes: list[Outcome] = []
    with workdir(opts.workdir) as base:
        stack = None if external else EmbeddedStack(base_dir=base)
        try:
            if stack is not None:
                stack.start()
            site = open_site(base, opts, stack)
            print(f"database {site.dsn.rsplit('@', 1)[-1]}, Kafka {site.bootstrap}, topics "
                  f"{site.topic_prefix}*, logs {site.logs}", flush=True)
            for config in opts.config_list:
                outcomes.append(run_config(site, config, opts, run_id))
        finally:
            if outcomes:
                print_summary(outcomes)
            if stack is not None:
                stack.stop()
    warn_if_code_changed(code, "later configurations")


if __name__ == "__main__":
    main()
