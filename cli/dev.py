"""``postwire dev up`` and ``postwire dev infra``: the local development stack.

Both run in the foreground until Ctrl-C or SIGTERM and then stop every child they started
(services first, then the broker, then Postgres). Data, logs, credentials and a lock live in
``--dir`` (default ``.postwire/dev`` under the current directory); the lock (``dev.lock``, an
``flock``) makes a second ``dev up``/``dev infra`` on the same directory exit with status 1.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, TypeAlias

from cli import dev_env
from cli.dev_context import remove_urls, write_urls
from deploy.embedded.broker import BrokerError
from deploy.embedded.devstate import (
    ADMIN_OPERATOR,
    AlreadyRunning,
    Credentials,
    acquire_lock,
    load_credentials,
)
from deploy.embedded.ports import PortInUseError, ensure_port_free, pick_port
from deploy.embedded.postgres import PostgresError
from deploy.embedded.services import (
    PORT_VARS,
    SERVICE_NAMES,
    ServiceName,
    ServiceProcess,
    ServiceStartError,
    service_available,
    service_port,
    start_service,
)
from deploy.embedded.stack import EmbeddedStack

_Handler: TypeAlias = "Callable[[int, FrameType | None], Any] | int | signal.Handlers | None"
DEFAULT_DIR = Path(".postwire/dev")
DEFAULT_PG_PORT = 55432
DEFAULT_BROKER_PORT = 59092
#: The dev stack's retry schedule unless POSTWIRE_RETRY_SCHEDULE is set: five attempts over
#: about 37 s (at most 45 s with +20% jitter), so a failing delivery is dead within a minute.
DEV_RETRY_SCHEDULE = "0,2,5,10,20"
_LABELS: dict[ServiceName, str] = {
    "ingest": "ingest API",
    "dispatcher": "dispatcher (health/metrics)",
    "dlq_replay": "admin/replay API",
}


class MigrationError(RuntimeError):
    """Migrations could not be applied; the message is one line naming the cause."""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``postwire dev up`` and ``postwire dev infra``."""
    dev = sub.add_parser("dev", help="run a local stack (embedded Postgres + Kafka broker)")
    actions = dev.add_subparsers(dest="dev_command", metavar="ACTION", required=True)
    up = actions.add_parser(
        "up",
        help="Postgres, broker, migrations and every service, until Ctrl-C",
        description="Start embedded Postgres and broker, apply migrations, start the services "
        "on their ports (POSTWIRE_*_PORT or 8080/8081/8082) and print how to use them.",
    )
    infra = actions.add_parser(
        "infra",
        help="only Postgres and the broker (run services yourself), until Ctrl-C",
        description="Start embedded Postgres and broker, apply migrations and print the "
        "export lines for POSTWIRE_DATABASE_URL and POSTWIRE_KAFKA_BOOTSTRAP.",
    )
    for parser in (up, infra):
        add = parser.add_argument
        add("--dir", type=Path, default=DEFAULT_DIR, help="state dir (default %(default)s)")
        add("--pg-port", type=int, help=f"Postgres port (default {DEFAULT_PG_PORT})")
        add("--broker-port", type=int, help=f"broker port (default {DEFAULT_BROKER_PORT})")
    infra.add_argument("--no-migrate", action="store_true", help="do not apply migrations")
    up.set_defaults(handler=cmd_up, no_migrate=False)
    dev_env.register(actions)
    infra.set_defaults(handler=cmd_infra)


def cmd_up(args: argparse.Namespace) -> int:
    """``dev up``: exit 0 after a clean stop, 1 on failure or a child dying, 1 if already up."""
    return _run(args, with_services=True)


def cmd_infra(args: argparse.Namespace) -> int:
    """``dev infra``: like ``dev up`` without the services."""
    return _run(args, with_services=False)


def _say(message: str = "") -> None:
    print(message, flush=True)


def _fail(message: str) -> int:
    print(f"postwire dev: {message}", file=sys.stderr, flush=True)
    return 1


def _run(args: argparse.Namespace, *, with_services: bool) -> int:
    base: Path = args.dir.resolve()
    base.mkdir(parents=True, exist_ok=True)
    try:
        lock = acquire_lock(base / "dev.lock")
    except AlreadyRunning as exc:
        return _fail(str(exc))
    session = _DevSession(base)
    previous = _trap_stop_signals()
    try:
        session.start(args, with_services=with_services)
        return session.supervise()
    except KeyboardInterrupt:
        _say("\nstopping ...")
        return 0
    except (PortInUseError, PostgresError, BrokerError, ServiceStartError, MigrationError) as exc:
        return _fail(str(exc))
    finally:
        for sig in previous:  # a second Ctrl-C must not cut the cleanup short
            signal.signal(sig, signal.SIG_IGN)
        session.shutdown()
        lock.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _trap_stop_signals() -> dict[signal.Signals, _Handler]:
    """Make SIGINT and SIGTERM (and SIGHUP unless ignored, as under nohup) raise
    KeyboardInterrupt. SIGINT is trapped even when inherited as ignored (a background job of a
    script), so that it always stops the stack cleanly. Returns the previous handlers."""
    previous: dict[signal.Signals, _Handler] = {}
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        if sig == signal.SIGHUP and signal.getsignal(sig) == signal.SIG_IGN:
            continue
        previous[sig] = signal.signal(sig, signal.default_int_handler)
    return previous


@dataclass
class _DevSession:
    """What one ``dev up``/``dev infra`` run started, so that it can all be stopped."""

    base: Path
    stack: EmbeddedStack | None = None
    running: list[ServiceProcess] = field(default_factory=list)

    def start(self, args: argparse.Namespace, *, with_services: bool) -> None:
        names = [n for n in SERVICE_NAMES if service_available(n)] if with_services else []
        ports = _service_ports(names)
        pg_port = _infra_port(args.pg_port, DEFAULT_PG_PORT, "embedded Postgres", "--pg-port")
        broker_port = _infra_port(
            args.broker_port, DEFAULT_BROKER_PORT, "embedded Kafka broker", "--broker-port"
        )
        _say(f"starting Postgres and the broker (state in {self.base}) ...")
        self.stack = EmbeddedStack(base_dir=self.base, pg_port=pg_port, broker_port=broker_port)
        self.stack.start()
        if not args.no_migrate:
            applied = run_migrations(self.stack.database_url)
            _say(f"migrations applied: {', '.join(applied)}" if applied else "schema up to date")
        if not with_services:
            _print_infra_banner(self.stack)
            return
        env = _service_env(self.stack, load_credentials(self.base / "credentials.json"), ports)
        for name in names:
            _say(f"starting {name} ...")
            self.running.append(start_service(name, env, self.stack.log_dir / f"{name}.log"))
        for service in self.running:
            service.wait_healthy(timeout_s=60.0)
        for service in self.running:  # ready: Postgres, Kafka, and the dispatcher consuming
            service.wait_healthy(url=f"{service.base_url}/readyz", timeout_s=60.0)
        write_urls(self.base, {service.name: service.base_url for service in self.running})
        _print_up_banner(self.stack, self.running, self.base)

    def supervise(self) -> int:
        """Block until interrupted (KeyboardInterrupt propagates); return 1 if a child dies."""
        assert self.stack is not None
        while True:
            time.sleep(0.5)
            for service in self.running:
                if not service.is_running():
                    return _fail(
                        f"{service.name} exited unexpectedly (status {service.returncode}); "
                        f"see {service.log_path}:\n{service.log_tail(15)}"
                    )
            for part, label in ((self.stack.postgres, "Postgres"), (self.stack.broker, "broker")):
                if not part.is_running():
                    return _fail(f"the {label} exited unexpectedly; see {part.log_path}")

    def shutdown(self) -> None:
        """Services first (SIGTERM, drain), then the broker, then Postgres. Blocks; never raises
        for a child that is already gone."""
        remove_urls(self.base)
        for service in reversed(self.running):
            service.stop()
        if self.stack is not None:
            self.stack.stop()
            _say("stopped: no child process left running")


def run_migrations(dsn: str) -> list[str]:
    """Apply pending migrations to ``dsn`` and return the versions applied (blocking; must not
    be called from a running event loop). Raises MigrationError on any failure."""
    from shared.adapters.pg.migrations import apply_migrations

    try:
        return asyncio.run(apply_migrations(dsn))
    except Exception as exc:  # any cause (connection, SQL, checksum) becomes one line
        raise MigrationError(f"migrations failed: {type(exc).__name__}: {exc}") from exc


def _infra_port(explicit: int | None, default: int, purpose: str, flag: str) -> int:
    """An explicit port must be free (else PortInUseError); the default falls back to any."""
    if explicit is not None:
        ensure_port_free(explicit, purpose, f"free it or pass another {flag}")
        return explicit
    port = pick_port(default)
    if port != default:
        _say(f"note: port {default} is busy, so {purpose} uses port {port}")
    return port


def _service_ports(names: list[ServiceName]) -> dict[ServiceName, int]:
    """Each service's port from the environment or its default; all must be free."""
    host = os.environ.get("POSTWIRE_HOST", "127.0.0.1")
    ports: dict[ServiceName, int] = {}
    for name in names:
        port = service_port(name, dict(os.environ))
        hint = f"stop whatever holds it or set {PORT_VARS[name]} to another port"
        ensure_port_free(port, f"the {_LABELS[name]}", hint, host=host)
        ports[name] = port
    return ports


def _service_env(
    stack: EmbeddedStack, creds: Credentials, ports: dict[ServiceName, int]
) -> dict[str, str]:
    """The user's own POSTWIRE_* settings, with the dev stack's connection and auth on top."""
    env = {k: v for k, v in os.environ.items() if k.startswith("POSTWIRE_")}
    env.update(
        {
            "POSTWIRE_DATABASE_URL": stack.database_url,
            "POSTWIRE_KAFKA_BOOTSTRAP": stack.kafka_bootstrap,
            "POSTWIRE_API_KEYS": creds.api_key,
            "POSTWIRE_ADMIN_TOKENS": creds.admin_tokens_env,
        }
    )
    env.setdefault("POSTWIRE_ALLOW_PRIVATE_TARGETS", "true")
    env.setdefault("POSTWIRE_RETRY_SCHEDULE", DEV_RETRY_SCHEDULE)
    env.update({PORT_VARS[name]: str(port) for name, port in ports.items()})
    return env


def _print_infra_banner(stack: EmbeddedStack) -> None:
    _say()
    _say(f"export POSTWIRE_DATABASE_URL={stack.database_url}")
    _say(f"export POSTWIRE_KAFKA_BOOTSTRAP={stack.kafka_bootstrap}")
    _say()
    _say(f"logs in {stack.log_dir}; Ctrl-C (or kill {os.getpid()}) stops everything")


def _print_up_banner(stack: EmbeddedStack, running: list[ServiceProcess], base: Path) -> None:
    env = running[0].env if running else {}
    _say("\nPostwire dev stack is up\n")
    by_name = {service.name: service for service in running}
    for name in SERVICE_NAMES:
        service = by_name.get(name)
        where = service.base_url if service else "(not available yet: no services." + name + ")"
        _say(f"  {_LABELS[name]:<28} {where}")
    _say(f"  {'Postgres':<28} {stack.database_url}")
    _say(f"  {'Kafka bootstrap':<28} {stack.kafka_bootstrap}")
    _say(f"  {'logs':<28} {stack.log_dir}")
    admin = env.get("POSTWIRE_ADMIN_TOKENS", ":").split(":", 1)[1]
    if env:
        _say(f"\n  API key      {env['POSTWIRE_API_KEYS']}")
        _say(f"  admin token  {admin}   (operator {ADMIN_OPERATOR!r})")
        _say(f"  (both kept in {base / 'credentials.json'})")
        _say(f"  retry schedule {env.get('POSTWIRE_RETRY_SCHEDULE')} s (POSTWIRE_RETRY_SCHEDULE)")
        _say('  in another terminal: eval "$(.venv/bin/postwire dev env)" sets POSTWIRE_API_KEY,'
             " POSTWIRE_INGEST_URL, POSTWIRE_ADMIN_URL and POSTWIRE_ADMIN_TOKEN")
    ingest, admin_api = by_name.get("ingest"), by_name.get("dlq_replay")
    if ingest is not None:
        _say(_curl_examples(ingest.base_url, env["POSTWIRE_API_KEYS"]))
    if admin_api is not None:
        auth = f"-H 'Authorization: Bearer {admin}'"
        _say(f"  curl -sS {admin_api.base_url}/admin/v1/dead-letters {auth}")
        _say(f"\nOperator console: {admin_api.base_url}/console (sign in with the admin token);"
             " merchant portal links: postwire portal-link ACCOUNT")
    _say(f"\nCtrl-C (or kill {os.getpid()}) stops everything.")


def _curl_examples(base_url: str, api_key: str) -> str:
    auth = f"-H 'Authorization: Bearer {api_key}' -H 'Content-Type: application/json'"
    return (
        "\nTry it (point the endpoint url at a receiver of yours that answers 2xx):\n"
        f"  curl -sS -X POST {base_url}/v1/endpoints {auth} \\\n"
        """    -d '{"account_id": "acct_demo", "url": "http://127.0.0.1:9000/webhooks"}'\n"""
        f"  curl -sS -X POST {base_url}/v1/events {auth} \\\n"
        """    -d '{"account_id": "acct_demo", "type": "invoice.paid", "data": {"amount": 42}}'"""
    )
