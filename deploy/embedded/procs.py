"""Child-process plumbing shared by the embedded Postgres, broker and service launchers.

Every child we start lives in its own session (``start_new_session=True``), so its PID is also
its process-group id and ``killpg(pid, ...)`` reaches it and anything it forked (Postgres
backends, for instance). On Linux, children started from the main thread also get a
parent-death signal (``prctl(PR_SET_PDEATHSIG)``), so a parent that is SIGKILLed does not leave
them behind.

Caveats of the parent-death signal, all deliberate:
- Linux delivers it when the *thread* that forked the child exits, not the process. We only arm
  it when ``spawn`` is called from the main thread; children spawned from other threads rely on
  explicit ``stop()``/``kill()`` and the ``atexit`` hooks of their owners.
- The kernel clears it whenever credentials change. ``subprocess`` switches user/group (the
  ``user=``/``group=`` arguments, used to run Postgres as a non-root user) *before* it calls
  ``preexec_fn``, so arming it in ``preexec_fn`` still works for those children.
- It is not inherited across ``fork``: grandchildren (Postgres backends) are not covered, but the
  postmaster takes its backends down when it exits.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

_PR_SET_PDEATHSIG = 1


def _load_prctl() -> Callable[..., int] | None:
    """libc's ``prctl``, resolved once in the parent (the forked child must not allocate)."""
    if not sys.platform.startswith("linux"):
        return None
    name = ctypes.util.find_library("c") or "libc.so.6"
    try:
        prctl: Callable[..., int] = ctypes.CDLL(name, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return prctl


_PRCTL = _load_prctl()


def pdeathsig_preexec(sig: signal.Signals) -> Callable[[], None] | None:
    """Return a ``preexec_fn`` that makes the child receive ``sig`` when its parent dies.

    Returns None (nothing to arm) off Linux or when called outside the main thread; see the
    module docstring for why. The returned function runs in the forked child and never raises:
    if the parent already died before it ran, the child exits at once.
    """
    prctl = _PRCTL
    if prctl is None or threading.current_thread() is not threading.main_thread():
        return None
    parent = os.getpid()
    return lambda: _arm_pdeathsig(prctl, int(sig), parent)


def die_with_parent(sig: signal.Signals) -> None:
    """Called in a child process (e.g. a ``multiprocessing`` helper): receive ``sig`` when the
    parent process dies; exit at once if it already has. No-op off Linux."""
    if _PRCTL is not None:
        _arm_pdeathsig(_PRCTL, int(sig), os.getppid())


def _arm_pdeathsig(prctl: Callable[..., int], signum: int, parent: int) -> None:
    """In the child: ask for ``signum`` at the parent's death, then exit if ``parent`` (the
    expected parent pid) is already gone (it died before the request took effect)."""
    prctl(_PR_SET_PDEATHSIG, signum, 0, 0, 0)
    if os.getppid() != parent:
        os._exit(1)


def spawn(
    argv: Sequence[str | os.PathLike[str]],
    *,
    log_path: Path,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    user: str | None = None,
    death_signal: signal.Signals = signal.SIGTERM,
) -> subprocess.Popen[bytes]:
    """Start ``argv`` as a new session leader with stdout+stderr appended to ``log_path``.

    ``user`` switches the child to that user and its primary group (the caller must be root).
    Does not wait for the child to become useful; raises OSError if it cannot be started.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        log.write(f"--- {time.strftime('%Y-%m-%dT%H:%M:%S')} starting {argv[0]}\n".encode())
        log.flush()
        return subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=cwd,
            user=user,
            group=_primary_group(user),
            extra_groups=[] if user is not None else None,
            start_new_session=True,
            preexec_fn=pdeathsig_preexec(death_signal),
        )


def _primary_group(user: str | None) -> int | None:
    if user is None:
        return None
    import pwd

    return pwd.getpwnam(user).pw_gid


def signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    """Send ``sig`` to the child's process group (falls back to the child alone). Never raises."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        return
    except PermissionError:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(proc.pid, sig)


def terminate(proc: subprocess.Popen[bytes], sig: signal.Signals, timeout_s: float) -> int | None:
    """Send ``sig`` to the group, wait up to ``timeout_s``, then SIGKILL the whole tree.

    Blocks until the child is reaped and its descendants are gone (up to a few seconds for
    those, which are reaped by init). Returns the child's exit status (negative signal number
    when killed by a signal).
    """
    signal_group(proc, sig)
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        kill_now(proc)
    return proc.returncode


def kill_now(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the child, its process group and every descendant (some, like Postgres backends,
    run in sessions of their own), then reap it and wait for the descendants to vanish."""
    tree = descendants(proc.pid) if proc.poll() is None else []
    signal_group(proc, signal.SIGKILL)
    for pid in tree:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    proc.wait()
    wait_gone([*tree, *group_members(proc.pid)], timeout_s=5.0)


def wait_gone(pids: list[int], timeout_s: float) -> bool:
    """Wait until none of ``pids`` is alive (zombies count as gone). True if they all went."""
    deadline = time.monotonic() + timeout_s
    while True:
        alive = [pid for pid in pids if pid_alive(pid)]
        if not alive:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)


def _proc_table() -> list[tuple[int, str, int, int]]:
    """(pid, state, ppid, pgrp) of every process visible in ``/proc`` (empty off Linux)."""
    table: list[tuple[int, str, int, int]] = []
    proc_root = Path("/proc")
    if not proc_root.is_dir():
        return table
    for entry in proc_root.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # Fields after the parenthesised command: state ppid pgrp ...
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) >= 3:
            table.append((int(entry.name), fields[0], int(fields[1]), int(fields[2])))
    return table


def group_members(pgid: int) -> list[int]:
    """PIDs of live (non-zombie) processes whose process group is ``pgid`` (Linux ``/proc``)."""
    return [pid for pid, state, _ppid, pgrp in _proc_table() if pgrp == pgid and state != "Z"]


def descendants(pid: int) -> list[int]:
    """PIDs of all live descendants of ``pid`` (children, grandchildren...), via ``/proc``."""
    children: dict[int, list[int]] = {}
    for child, state, ppid, _pgrp in _proc_table():
        if state != "Z":
            children.setdefault(ppid, []).append(child)
    found: list[int] = []
    frontier = [pid]
    while frontier:
        current = frontier.pop()
        for child in children.get(current, []):
            found.append(child)
            frontier.append(child)
    return found


def pid_alive(pid: int) -> bool:
    """True if a process with this PID exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat[stat.rfind(")") + 2 :].split()[0] != "Z"


def log_tail(path: Path, lines: int = 20) -> str:
    """The last ``lines`` lines of a log file, or an empty string if it cannot be read."""
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 16384))
            data = handle.read()
    except OSError:
        return ""
    return "\n".join(data.decode(errors="replace").splitlines()[-lines:])


def write_text_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable by the owner only (credentials, lock files)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
