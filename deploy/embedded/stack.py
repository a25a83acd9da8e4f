"""Embedded Postgres + broker together: what ``postwire dev`` and the test suite run on.

Layout under ``base_dir``::

    pgdata/            Postgres data directory (persists across runs)
    logs/postgres.log  server log
    logs/broker.log    broker log

Child processes are never orphaned: each runs in its own session and is stopped by PID on
``stop()``, on context-manager exit and at interpreter exit (``atexit``); on Linux they also get a
parent-death signal (see ``deploy.embedded.procs``).
"""

from __future__ import annotations

import atexit
from pathlib import Path
from types import TracebackType

from deploy.embedded.broker import EmbeddedBroker
from deploy.embedded.ports import free_port
from deploy.embedded.postgres import DEFAULT_DATABASE, EmbeddedPostgres


class EmbeddedStack:
    """One embedded Postgres and one embedded broker with a shared lifecycle.

    ``pg_port``/``broker_port`` of None mean "any free port". ``postgres`` and ``broker`` are
    only usable after ``start``. Methods block; not thread-safe. As a context manager it starts
    (in ``base_dir`` given here) on entry unless already started, and stops on exit::

        with EmbeddedStack(base_dir=tmp) as stack:
            ...
    """

    def __init__(
        self,
        *,
        base_dir: Path | None = None,
        pg_port: int | None = None,
        broker_port: int | None = None,
        database: str = DEFAULT_DATABASE,
    ) -> None:
        self._pg_port = pg_port
        self._broker_port = broker_port
        self._database = database
        self._postgres: EmbeddedPostgres | None = None
        self._broker: EmbeddedBroker | None = None
        self._base_dir: Path | None = base_dir

    @property
    def postgres(self) -> EmbeddedPostgres:
        """The Postgres server. Raises RuntimeError before ``start``."""
        if self._postgres is None:
            raise RuntimeError("EmbeddedStack was never started")
        return self._postgres

    @property
    def broker(self) -> EmbeddedBroker:
        """The broker. Raises RuntimeError before ``start``."""
        if self._broker is None:
            raise RuntimeError("EmbeddedStack was never started")
        return self._broker

    @property
    def base_dir(self) -> Path:
        """The directory given to ``start``."""
        if self._base_dir is None:
            raise RuntimeError("EmbeddedStack was never started")
        return self._base_dir

    @property
    def database_url(self) -> str:
        """DSN of the application database (``postwire`` unless told otherwise)."""
        return self.postgres.dsn

    @property
    def kafka_bootstrap(self) -> str:
        """Bootstrap servers string of the broker."""
        return self.broker.bootstrap

    @property
    def log_dir(self) -> Path:
        """Where ``postgres.log`` and ``broker.log`` are written."""
        return self.base_dir / "logs"

    def pids(self) -> list[int]:
        """PIDs of the running children (postmaster, broker)."""
        candidates = [
            self._postgres.pid if self._postgres else None,
            self._broker.pid if self._broker else None,
        ]
        return [pid for pid in candidates if pid is not None]

    def is_running(self) -> bool:
        """True while both children are alive."""
        return len(self.pids()) == 2

    def start(self, base_dir: Path | None = None, *, timeout_s: float = 60.0) -> None:
        """Start Postgres (data in ``base_dir/pgdata``) then the broker, each ready on return.

        ``base_dir`` defaults to the one given to the constructor. If anything fails, whatever
        was started is stopped again before the error propagates (PortInUseError, PostgresError,
        BrokerError).
        """
        if self._postgres is not None and self._postgres.is_running():
            raise RuntimeError("EmbeddedStack already started")
        chosen = base_dir if base_dir is not None else self._base_dir
        if chosen is None:
            raise ValueError("EmbeddedStack.start needs a base_dir")
        self._base_dir = chosen.resolve()
        logs = self._base_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        self._postgres = EmbeddedPostgres(database=self._database, log_path=logs / "postgres.log")
        self._broker = EmbeddedBroker(log_path=logs / "broker.log")
        atexit.register(self.stop)
        try:
            pg_port = self._pg_port if self._pg_port is not None else free_port()
            self._postgres.start(self._base_dir / "pgdata", pg_port, timeout_s=timeout_s)
            broker_port = self._broker_port if self._broker_port is not None else free_port()
            self._broker.start(broker_port, timeout_s=timeout_s)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop the broker, then Postgres (fast shutdown). Idempotent; never leaves children."""
        if self._broker is not None:
            self._broker.stop()
        if self._postgres is not None:
            self._postgres.stop()

    def kill(self) -> None:
        """SIGKILL both children at once (crash simulation)."""
        if self._broker is not None:
            self._broker.kill()
        if self._postgres is not None:
            self._postgres.kill()

    def __enter__(self) -> EmbeddedStack:
        """Start (unless already running) and return self."""
        if not self.is_running():
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
