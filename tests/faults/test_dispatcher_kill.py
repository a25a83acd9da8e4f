"""Fault test: kill -9 of one of three dispatchers under load from two ingest processes.

Real processes on the module's Postgres database and the embedded broker: 2 ingest, 3
dispatchers (the deliveries topic has 6 partitions, 2 each). Events are posted to both ingest
processes in turn at ``RATE_PER_S`` for ``LOAD_S`` seconds, one account, five endpoints on the
test's receiver:

- ``/plain-a`` and ``/plain-b``: both subscribed to ``t.plain`` (fan-out of two), no limit;
- ``/limited``: ``max_in_flight`` 2, answers after 100 ms, offered 15 a second (more than
  one request at a time can serve, so it runs at its limit while every dispatcher claims for
  it);
- ``/rated``: ``rate_limit_per_s`` ``RATE_LIMIT``, offered half as much again;
- ``/keyed``: every event carries one of three ordering keys.

Deliveries are keyed by endpoint, so each endpoint's work goes to the dispatcher owning its
partition; the first four endpoints are placed on four different partitions (an endpoint
created on a partition already taken is deleted and created again), so whichever three
partitions each survivor owns after the kill, both have endpoints to serve. At ``KILL_AT`` of
the load, the dispatcher holding partitions is killed with SIGKILL, leaving attempts in flight
and leases held: until those leases expire, the new owner of an endpoint claims beside the
dead one's leases, and the limits, which live in Postgres, must still hold.

Checks: its partitions move to the two survivors and both deliver afterwards; every accepted
event reached every endpoint it was meant for with a 2xx (nothing lost), every delivery
succeeded and the ledger balances with nothing open; every request carries a known
``webhook-id``, a repeat carries the same bytes, and a repeated 2xx only for a request that
had reached the receiver by the time of the kill and came again after it (the killed process
could not record it);
``/limited`` never had more than 2 requests at once; ``/rated`` got no more than
``RATE_LIMIT`` requests in any closed one-second window of send times (no slack: a send that
would leave more than 49 ms after its slot gives the slot up, so this holds on any machine
load, see ``services/dispatcher/rate_slots.py``) and no more than ``RATE_LIMIT`` a second over
the run;
and per ordering key, first arrivals follow acceptance order (the sequence ingest allocated)
and none arrives before its predecessor was answered.

Send times are the dispatchers' recorded attempt starts, the very time stamps the send
decision brackets: the receiver shares this test's event loop, whose stalls on a busy machine
stamped arrivals up to 450 ms late while the sends were 105 ms apart. The killed process's
requests that it could not record (0 or 1 per run: a request to ``/rated`` is answered at
once) have no exact send time, only their late arrival stamps; they count in the run's rate
but not in the windows (each could add at most one to a window, at its unknown time).
Concurrency at the receiver needs no such care: a request cannot start before the one whose
slot it takes has been answered.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
import asyncpg
import pytest_asyncio

from deploy.embedded.services import ServiceProcess
from shared.core.wakeup import partition_of
from tests.conftest import TEST_API_KEY, RunService, ServiceEnvFactory
from tests.support.dispatch import FAST_ENV, metric, poll
from tests.support.ledger import assert_ledger_balances
from tests.support.receiver import Received, Receiver, Reply
from tests.unit.test_dispatcher_rate_slots import most_in_closed_window

AUTH = {"Authorization": f"Bearer {TEST_API_KEY}"}
ACCOUNT = "acct_dispatcher_kill"
PARTITIONS = 6
RATE_PER_S = 100.0
LOAD_S = 12.0
KILL_AT = 0.4
RATE_LIMIT = 10
KILL_SLACK_S = 0.5    # a request the killed process wrote may be read this long after the kill
# Per 20 events: 8 fanned out to /plain-a and /plain-b, 3 to /limited, 6 keyed, 3 to /rated
# (at 100/s: 40, 15, 30 and 15 a second).
PATTERN = ["t.plain"] * 8 + ["t.limited"] * 3 + ["t.keyed"] * 6 + ["t.rated"] * 3
KEYS = ("k0", "k1", "k2")
# The fast test schedule, except that a message may wait in a dispatcher's memory for 10 s
# (half the stale window) before its endpoint's excess is parked in Postgres: parking on a
# young per-process rate estimate would delay /limited and /rated for a minute, which this
# test is not about. Expired leases are re-announced whatever the stale window.
ENV = {**FAST_ENV, "KAFKA_PARTITIONS": str(PARTITIONS), "RETRY_SCHEDULE": "0,1,1,2,4",
       "SWEEP_STALE_S": "20", "DB_POOL_SIZE": "5"}


@dataclass
class Accepted:
    """Events that got their 202 (id -> type and ordering key), and the other answers."""

    events: dict[str, tuple[str, str | None]] = field(default_factory=dict)
    refused: list[str] = field(default_factory=list)


@pytest_asyncio.fixture
async def rx() -> AsyncIterator[Receiver]:
    async with Receiver() as receiver:
        yield receiver


async def create_endpoints(ingest: ServiceProcess, rx: Receiver) -> dict[str, str]:
    """The five endpoints of the module docstring, the first four on distinct partitions;
    returns path -> endpoint id."""
    specs: dict[str, dict[str, object]] = {
        "/plain-a": {"event_types": ["t.plain"]},
        "/plain-b": {"event_types": ["t.plain"]},
        "/limited": {"event_types": ["t.limited"], "max_in_flight": 2},
        "/rated": {"event_types": ["t.rated"], "rate_limit_per_s": RATE_LIMIT},
        "/keyed": {"event_types": ["t.keyed"]},
    }
    ids: dict[str, str] = {}
    used: set[int] = set()
    async with aiohttp.ClientSession(ingest.base_url, headers=AUTH) as http:
        for path, spec in specs.items():
            body: dict[str, object] = {"account_id": ACCOUNT, "url": rx.url(path), **spec}
            for _ in range(50):
                async with http.post("/v1/endpoints", json=body) as resp:
                    assert resp.status == 201, await resp.text()
                    endpoint_id = (await resp.json())["id"]
                partition = partition_of(endpoint_id.encode(), PARTITIONS)
                if partition not in used or len(used) >= 4:
                    break
                async with http.delete(f"/v1/endpoints/{endpoint_id}") as resp:
                    assert resp.status in (200, 204), await resp.text()
            ids[path] = endpoint_id
            used.add(partition)
    assert len(used) >= 4, used
    return ids


async def offer(ingests: list[ServiceProcess], out: Accepted, kill: asyncio.Event) -> None:
    """Post ``RATE_PER_S`` events a second for ``LOAD_S`` s, alternating ingest processes;
    sets ``kill`` once ``KILL_AT`` of them were sent."""
    total = int(RATE_PER_S * LOAD_S)
    keyed_count = 0  # keys go round-robin over the keyed events

    async def post(http: aiohttp.ClientSession, url: str, event_type: str, key: str | None,
                   n: int) -> None:
        body: dict[str, object] = {"account_id": ACCOUNT, "type": event_type,
                                   "data": {"n": n, "key": key}}
        if key is not None:
            body["ordering_key"] = key
        async with http.post(url, json=body) as resp:
            if resp.status == 202:
                out.events[(await resp.json())["id"]] = (event_type, key)
            else:
                out.refused.append(f"{resp.status} {await resp.text()}")

    async with aiohttp.ClientSession(headers=AUTH) as http:
        posts: list[asyncio.Task[None]] = []
        start = time.monotonic()
        for n in range(total):
            delay = start + n / RATE_PER_S - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            event_type = PATTERN[n % len(PATTERN)]
            key = None
            if event_type == "t.keyed":
                key = KEYS[keyed_count % len(KEYS)]
                keyed_count += 1
            url = f"{ingests[n % len(ingests)].base_url}/v1/events"
            posts.append(asyncio.create_task(post(http, url, event_type, key, n)))
            if n == int(total * KILL_AT):
                kill.set()
        await asyncio.gather(*posts)


def expected_paths(event_type: str) -> list[str]:
    return {"t.plain": ["/plain-a", "/plain-b"], "t.limited": ["/limited"],
            "t.rated": ["/rated"], "t.keyed": ["/keyed"]}[event_type]


async def test_kill_9_of_one_of_three_dispatchers_keeps_every_guarantee(
        run_service: RunService, service_env: ServiceEnvFactory, rx: Receiver,
        database_url: str) -> None:
    ingests = [run_service("ingest", service_env(**ENV), wait=False) for _ in range(2)]
    dispatchers = [run_service("dispatcher", service_env(**ENV), wait=False) for _ in range(3)]
    for service in [*ingests, *dispatchers]:
        await service.wait_healthy_async(timeout_s=60)

    async def assigned() -> list[float]:
        return [await metric(d, "postwire_assigned_partitions") for d in dispatchers]

    await poll(assigned, lambda a: sum(a) == PARTITIONS and min(a) > 0, 60, interval_s=0.5)
    rx.program("/limited", [], default=Reply(200, delay_s=0.1))
    paths = await create_endpoints(ingests[0], rx)

    accepted = Accepted()
    kill_now = asyncio.Event()
    load = asyncio.create_task(offer(ingests, accepted, kill_now))
    await kill_now.wait()
    victim, survivors = dispatchers[1], [dispatchers[0], dispatchers[2]]
    victim_partitions = await metric(victim, "postwire_assigned_partitions")
    attempts_before = [await metric(s, "postwire_attempts_total") for s in survivors]
    victim.kill()
    killed_at = time.monotonic()
    await load

    assert not accepted.refused, f"ingest refused events: {accepted.refused[:3]}"
    assert len(accepted.events) == int(RATE_PER_S * LOAD_S)
    assert victim_partitions > 0, "the killed dispatcher held partitions"

    # Its partitions move to the survivors, and both go on delivering.
    async def survivors_assigned() -> float:
        return sum([await metric(s, "postwire_assigned_partitions") for s in survivors])

    await poll(survivors_assigned, lambda n: n == PARTITIONS, 30, interval_s=0.5)

    # Nothing lost: every accepted event reached every endpoint it was meant for with a 2xx.
    wanted = {(path, event_id) for event_id, (event_type, _) in accepted.events.items()
              for path in expected_paths(event_type)}

    def delivered() -> set[tuple[str, str]]:
        return {(r.path, r.webhook_id) for r in rx.requests if 200 <= r.status < 300}

    try:
        await rx.wait_for(lambda: wanted <= delivered(), timeout_s=60)
    except TimeoutError:
        missing = sorted(wanted - delivered())
        raise AssertionError(f"{len(missing)} of {len(wanted)} deliveries never arrived, "
                             f"e.g. {missing[:3]}; open: {await _open(database_url)}") from None
    for service, before in zip(survivors, attempts_before, strict=True):
        assert await metric(service, "postwire_attempts_total") > before, \
            "every survivor delivers after the kill"
    try:
        statuses = await poll(lambda: _statuses(database_url, list(accepted.events)),
                              lambda got: set(got) == {"succeeded"}, 30)
    except TimeoutError:
        raise AssertionError(f"deliveries left open: {await _open(database_url)}") from None
    assert statuses == {"succeeded": len(wanted)}
    ledger = await assert_ledger_balances(database_url, open_allowed=False)
    assert ledger.events_accepted >= len(accepted.events)

    # Repeats: known webhook-id, same bytes, and a repeated 2xx only for a request that had
    # reached the receiver by the time of the kill.
    bodies: dict[str, set[bytes]] = defaultdict(set)
    successes: dict[tuple[str, str], list[float]] = defaultdict(list)
    for r in rx.requests:
        assert r.webhook_id in accepted.events, f"unknown webhook-id {r.webhook_id!r}"
        bodies[r.webhook_id].add(r.body)
        if 200 <= r.status < 300:
            successes[(r.path, r.webhook_id)].append(r.at)
    assert all(len(b) == 1 for b in bodies.values()), "a repeat carried other bytes"
    unexplained = [key for key, times in successes.items() if len(times) > 1 and not (
        times[0] <= killed_at + KILL_SLACK_S and times[1] > killed_at)]
    assert not unexplained, f"repeated 2xx with no crash before the first: {unexplained[:3]}"
    repeats = sum(len(times) - 1 for times in successes.values())
    print(f"{len(wanted)} deliveries, {len(rx.requests)} requests, {repeats} repeated 2xx "
          f"after the kill; the killed dispatcher held {victim_partitions:.0f} partitions")

    # Limits held across the processes, through the kill.
    assert rx.max_concurrent["/limited"] <= 2, rx.max_concurrent["/limited"]
    assert rx.max_concurrent["/limited"] == 2, "the load kept two requests in flight"
    recorded, unrecorded = await _send_times(database_url, paths["/rated"], rx)
    sends = recorded + unrecorded
    assert len(sends) >= len(rx.requests_for("/rated"))
    assert most_in_closed_window(recorded) <= RATE_LIMIT, busiest_second(recorded)
    assert most_in_closed_window(recorded) >= RATE_LIMIT * 0.8, "the load pressed on the limit"
    assert len(sends) / (max(sends) - min(sends)) <= RATE_LIMIT, "the long-run rate held"
    missed = sum([await metric(s, "postwire_rate_slot_missed_total") for s in survivors])
    print(f"/rated: {len(recorded)} recorded sends, {len(unrecorded)} unrecorded (killed), "
          f"survivors gave up {missed:.0f} late slots; {busiest_second(recorded)}")

    # Order per key: first arrivals follow acceptance order (the sequence ingest allocated),
    # and none arrives before its predecessor's first 2xx was answered.
    sequence = await _sequences(database_url, paths["/keyed"])
    for key in KEYS:
        firsts: dict[str, Received] = {}
        for r in rx.requests_for("/keyed"):
            if r.json()["data"]["key"] == key:
                firsts.setdefault(r.webhook_id, r)
        assert len(firsts) == sum(1 for _, k in accepted.events.values() if k == key)
        assert list(firsts) == sorted(firsts, key=sequence.__getitem__), f"key {key} out of order"
        ordered = list(firsts.values())
        for earlier, later in itertools.pairwise(ordered):
            assert earlier.done_at is not None and later.at >= earlier.done_at, \
                f"key {key}: {later.webhook_id} sent before {earlier.webhook_id} was answered"


def busiest_second(times: list[float]) -> str:
    """The sends of the busiest closed one-second window, as offsets from its first (ms)."""
    ordered = sorted(times)
    best: list[float] = []
    for i, start in enumerate(ordered):
        window = [t for t in ordered[i:] if t - start <= 1.0]
        if len(window) > len(best):
            best = window
    return f"{len(best)} sends within 1 s at +ms " + ", ".join(
        f"{(t - best[0]) * 1000:.0f}" for t in best)


async def _fetch(database_url: str, sql: str, *args: object) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(database_url)
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


async def _statuses(database_url: str, event_ids: list[str]) -> dict[str, int]:
    rows = await _fetch(database_url, "SELECT status, count(*) AS n FROM deliveries"
                        " WHERE event_id = ANY($1) GROUP BY status", event_ids)
    return {r["status"]: r["n"] for r in rows}


async def _open(database_url: str) -> list[dict[str, object]]:
    """The open deliveries with what says why (lease, announcement, attempts)."""
    rows = await _fetch(
        database_url, "SELECT id, endpoint_id, status, ordering_key, sequence, lease_owner,"
        " lease_until, published_at, next_attempt_at, created_at, updated_at,"
        " attempt_count, now() AS now FROM deliveries"
        " WHERE status IN ('pending', 'retrying') LIMIT 5")
    return [dict(r) for r in rows]


async def _send_times(database_url: str, endpoint_id: str, rx: Receiver
                      ) -> tuple[list[float], list[float]]:
    """When each request to the endpoint was sent (wall clock): the dispatchers' recorded
    attempt starts, and, for each request the receiver saw but no attempt records (the killed
    process's), its arrival."""
    rows = await _fetch(database_url, "SELECT d.event_id, a.started_at FROM attempts a"
                        " JOIN deliveries d ON d.id = a.delivery_id WHERE d.endpoint_id = $1",
                        endpoint_id)
    recorded: dict[str, list[float]] = defaultdict(list)
    for r in rows:
        recorded[r["event_id"]].append(r["started_at"].timestamp())
    arrived: dict[str, list[float]] = defaultdict(list)
    for request in rx.requests:
        if request.path == "/rated":
            arrived[request.webhook_id].append(request.wall)
    sends = [t for times in recorded.values() for t in times]
    unrecorded: list[float] = []
    for event_id, walls in arrived.items():
        unrecorded.extend(sorted(walls)[:max(0, len(walls) - len(recorded[event_id]))])
    return sends, unrecorded


async def _sequences(database_url: str, endpoint_id: str) -> dict[str, int]:
    """Event id -> its delivery's sequence within its ordering key, for one endpoint."""
    rows = await _fetch(database_url, "SELECT event_id, sequence FROM deliveries"
                        " WHERE endpoint_id = $1", endpoint_id)
    return {r["event_id"]: r["sequence"] for r in rows}
