"""The benchmark's webhook receiver: an aiohttp server (uvloop) in its own process.

It listens on 127.0.0.1, port 0 (the kernel picks; the port is sent back through a pipe),
answers every ``POST /hook/{name}`` with 204 after reading the body, and records the arrival
time (``time.time()``, the machine's wall clock, comparable with the load generator's) of the
first request per ``(name, webhook-id)``. Repeats are counted as duplicates.

Control routes, used by the parent between phases:

- ``GET /_stats`` -> ``{"received": requests so far, "distinct": keys held, "duplicates": n}``
- ``POST /_take`` -> ``{"<name> <webhook-id>": arrival, ...}``: every key recorded since the
  last take, which are then forgotten (the request counters keep counting).

Running it in its own process keeps it off the load generator's and the parent's event loops.
The parent drives it through :class:`ReceiverProcess` and stops it by PID.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import socket
import time
import urllib.request
from multiprocessing.connection import Connection
from typing import Any

import orjson
import uvloop
from aiohttp import web

_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class _State:
    """What the receiver has seen; single event loop."""

    def __init__(self) -> None:
        self.receipts: dict[str, float] = {}
        self.received = 0
        self.duplicates = 0

    async def hook(self, request: web.Request) -> web.Response:
        now = time.time()
        await request.read()
        key = f"{request.match_info['name']} {request.headers.get('webhook-id', '')}"
        self.received += 1
        if key in self.receipts:
            self.duplicates += 1
        else:
            self.receipts[key] = now
        return web.Response(status=204)

    async def stats(self, _: web.Request) -> web.Response:
        body = {"received": self.received, "distinct": len(self.receipts),
                "duplicates": self.duplicates}
        return web.Response(body=orjson.dumps(body), content_type="application/json")

    async def take(self, _: web.Request) -> web.Response:
        taken, self.receipts = self.receipts, {}
        return web.Response(body=orjson.dumps(taken), content_type="application/json")


async def _serve(out: Connection) -> None:
    state = _State()
    app = web.Application()
    app.router.add_post("/hook/{name}", state.hook)
    app.router.add_get("/_stats", state.stats)
    app.router.add_post("/_take", state.take)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    await web.SockSite(runner, sock).start()
    out.send(sock.getsockname()[1])
    try:
        await asyncio.Event().wait()  # until the parent terminates the process
    finally:
        await runner.cleanup()


def _main(out: Connection) -> None:
    """Process entry point. Ctrl-C is left to the parent, which stops this process by PID."""
    from bench._common import child_setup

    child_setup()
    uvloop.run(_serve(out))


class ReceiverProcess:
    """Starts, queries and stops the receiver process. Methods block; parent side only."""

    def __init__(self) -> None:
        self._proc: Any = None
        self.port = 0

    @property
    def pid(self) -> int:
        return int(self._proc.pid) if self._proc is not None else 0

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/hook/{name}"

    def start(self, timeout_s: float = 30.0) -> None:
        """Spawn the process and wait for its port; RuntimeError if it does not come up."""
        ctx = multiprocessing.get_context("spawn")
        parent_end, child_end = ctx.Pipe(duplex=False)
        self._proc = ctx.Process(target=_main, args=(child_end,), name="bench-receiver",
                                 daemon=True)
        self._proc.start()
        child_end.close()
        if not parent_end.poll(timeout_s):
            self.stop()
            raise RuntimeError("receiver process did not report its port")
        self.port = int(parent_end.recv())

    def _call(self, method: str, path: str) -> Any:
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", method=method,
                                         data=b"" if method == "POST" else None)
        with _NO_PROXY.open(request, timeout=30) as response:
            return orjson.loads(response.read())

    def stats(self) -> dict[str, int]:
        """Counters: ``received`` (requests), ``distinct`` (held keys), ``duplicates``."""
        result: dict[str, int] = self._call("GET", "/_stats")
        return result

    def take(self) -> dict[str, float]:
        """Every ``"<name> <webhook-id>" -> arrival`` recorded since the last take."""
        result: dict[str, float] = self._call("POST", "/_take")
        return result

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 5 s. Idempotent."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.is_alive():
            proc.terminate()
            proc.join(5)
        if proc.is_alive():
            proc.kill()
            proc.join(5)
