"""The Postgres-only fast path on a real Postgres: ingest's batch statement notifies its
messages from its own transaction (at commit, never for a rollback) and leaves their outbox
rows; the claim that settles or leases a notified delivery deletes its row in the same
transaction, keeps it for a deferral or a failed transaction, and does not wait for a relay
that is publishing it; a pool connection released after a normal end is not probed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime

import asyncpg
import orjson
import pytest
import pytest_asyncio

from services.dispatcher.claim_plan import ClaimConfig
from services.dispatcher.claims import ClaimStore
from services.dispatcher.model import Pending
from services.dispatcher.offsets import WAKEUP_PARTITION, Ticket
from services.ingest.events_repo import BatchRows, BatchWritten, write_batch
from shared.adapters.kafka.publisher import KafkaPublisher, Message
from shared.adapters.kafka.topics import ensure_topics
from shared.adapters.pg.outbox import insert_outbox
from shared.adapters.pg.pool import acquire_settled, create_pool
from shared.core.delivery_message import (
    DeliveryMessage,
    decode_delivery_message,
    encode_delivery_message,
)
from shared.core.event_fingerprint import WINDOW
from shared.core.ids import new_id
from shared.core.wakeup import CHANNEL, MAX_PAYLOAD, decode_payload, encode_payload
from shared.outbox_relay import OutboxRelay
from tests.support.dispatch import Endpoint, Event, Seeder
from tests.support.topics import read_deliveries_by_id

CFG = ClaimConfig(first_delay_s=0.0, lease_s=5.0, rate_horizon_s=1.0)


@pytest_asyncio.fixture(scope="module")
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    p = await asyncpg.create_pool(database_url, min_size=2, max_size=6)
    yield p
    await p.close()


@pytest_asyncio.fixture
async def heard(database_url: str) -> AsyncIterator[list[str]]:
    """Payloads notified on the wake-up channel while the test runs."""
    got: list[str] = []
    conn = await asyncpg.connect(database_url)
    await conn.add_listener(CHANNEL, lambda _c, _p, _ch, payload: got.append(payload))
    yield got
    await conn.close()


def _batch(ep: Endpoint, count: int, ordering_key: str | None = None) -> BatchRows:
    rows = BatchRows()
    for j in range(count):
        rows.ids.append(new_id("evt"))
        rows.account_ids.append(ep.account_id)
        rows.types.append("wake.up")
        rows.ordering_keys.append(ordering_key)
        rows.ordering_keys_json.append(orjson.dumps(ordering_key).decode())
        rows.bodies.append(b"{}")
        rows.response_heads.append('{"id":"x","delivery_count":')
        rows.idem_keys.append(None)
        rows.request_hashes.append(None)
        rows.pair_events.append(j + 1)
        rows.pair_endpoints.append(ep.id)
        rows.pair_deliveries.append(new_id("dlv"))
    return rows


async def _write(conn: asyncpg.Connection, rows: BatchRows, notify: bool) -> BatchWritten:
    now = datetime.now(UTC)
    return await write_batch(conn, rows, now, now - WINDOW, now, notify)


async def _until(check: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def _outbox_left(pool: asyncpg.Pool, ids: list[int]) -> list[int]:
    return sorted(r["id"] for r in await pool.fetch(
        "SELECT id FROM outbox WHERE id = ANY($1::bigint[])", ids))


async def test_a_batch_notifies_from_its_own_transaction_and_keeps_the_rows(
        pool: asyncpg.Pool, seed: Seeder, database_url: str, heard: list[str]) -> None:
    ep = await seed.endpoint("http://x.test/")
    conn = await asyncpg.connect(database_url)
    try:
        tx = conn.transaction()
        await tx.start()
        rolled_back = await _write(conn, _batch(ep, 2), notify=True)
        assert rolled_back.notified == 2
        await asyncio.sleep(0.3)
        assert heard == []                                   # not before the commit...
        await tx.rollback()
        await asyncio.sleep(0.3)
        assert heard == []                                   # ...and never for a rollback
        quiet = await _write(conn, _batch(ep, 2), notify=False)
        assert quiet.notified == 0
        written = await _write(conn, _batch(ep, 3, ordering_key='cust-\u00e9-"7"\t'),
                               notify=True)
        await _until(lambda: len(heard) == 1)
    finally:
        await conn.close()
    assert written.notified == 3
    encoded = encode_payload([(outbox_id, value) for outbox_id, _, value in written.outbox])
    assert encoded is not None and heard == [encoded[0]]     # SQL renders the reference text
    messages = [decode_delivery_message(value) for _, value in decode_payload(heard[0])]
    assert [m.ordering_key for m in messages] == ['cust-\u00e9-"7"\t'] * 3
    assert [m.sequence for m in messages] == [1, 2, 3]
    ids = [outbox_id for outbox_id, _, _ in [*written.outbox, *quiet.outbox]]
    assert await _outbox_left(pool, ids) == sorted(ids)      # left to the claim (or relay)
    await asyncio.sleep(0.2)
    assert len(heard) == 1                                    # notify=False sent nothing


async def test_what_does_not_fit_one_payload_is_not_notified(
        pool: asyncpg.Pool, seed: Seeder, database_url: str, heard: list[str]) -> None:
    ep = await seed.endpoint("http://x.test/")
    conn = await asyncpg.connect(database_url)
    try:
        written = await _write(conn, _batch(ep, 60), notify=True)
    finally:
        await conn.close()
    await _until(lambda: len(heard) == 1)
    assert 0 < written.notified < 60
    assert len(heard[0].encode()) <= MAX_PAYLOAD
    encoded = encode_payload([(outbox_id, value) for outbox_id, _, value in written.outbox])
    assert encoded == (heard[0], written.notified)           # the longest prefix that fits


async def _wakeup(pool: asyncpg.Pool, event: Event, ep: Endpoint, n: int) -> Pending:
    """The request a dispatcher makes of ``event``'s wake-up: its message and outbox row."""
    message = DeliveryMessage(event.delivery_ids[ep.id], event.id, ep.id, ep.account_id,
                              None, None)
    outbox_id = await pool.fetchval("SELECT id FROM outbox WHERE value = $1",
                                    event.messages[0].value)
    assert outbox_id is not None
    return Pending(Ticket(WAKEUP_PARTITION, n, 1), message, outbox_id=outbox_id)


async def test_a_claim_deletes_the_rows_it_settled_or_leased_and_keeps_a_deferral_s(
        pool: asyncpg.Pool, seed: Seeder) -> None:
    ep = await seed.endpoint("http://x.test/", max_in_flight=1)
    first, second = [await _wakeup(pool, await seed.event([ep], publish=False), ep, n)
                     for n in range(2)]
    result = await ClaimStore(pool, "me", CFG).claim([first, second])
    assert [c.delivery_id for c in result.claimed] == [first.message.delivery_id]
    assert [p for p, _ in result.deferred] == [second]       # max_in_flight 1
    assert result.consumed_outbox_ids == [first.outbox_id]
    assert first.outbox_id is not None and second.outbox_id is not None
    assert await _outbox_left(pool, [first.outbox_id, second.outbox_id]) == [second.outbox_id]
    # a wake-up for a delivery that is not there is settled, and its row goes too
    ghost = DeliveryMessage(new_id("dlv"), new_id("evt"), ep.id, ep.account_id, None, None)
    [ghost_row] = await pool.fetch(
        "INSERT INTO outbox (topic, key, value) VALUES ('deliveries', 'k', 'v') RETURNING id")
    result = await ClaimStore(pool, "me", CFG).claim(
        [Pending(Ticket(WAKEUP_PARTITION, 9, 1), ghost, outbox_id=ghost_row["id"])])
    assert [label for _, label in result.settled] == ["unknown"]
    assert await _outbox_left(pool, [ghost_row["id"]]) == []


async def test_a_failed_claim_keeps_the_row_for_the_relay_and_changes_nothing(
        pool: asyncpg.Pool, seed: Seeder, monkeypatch: pytest.MonkeyPatch,
        kafka_bootstrap: str, topic_prefix: str) -> None:
    ep = await seed.endpoint("http://x.test/")
    request = await _wakeup(pool, await seed.event([ep], publish=False), ep, 0)
    store = ClaimStore(pool, "me", CFG)
    apply = store._apply

    async def apply_then_fail(*args: object) -> object:
        await apply(*args)  # type: ignore[arg-type]
        raise ConnectionResetError("lost before COMMIT")

    monkeypatch.setattr(store, "_apply", apply_then_fail)
    with pytest.raises(ConnectionResetError):
        await store.claim([request])
    assert request.outbox_id is not None
    assert await _outbox_left(pool, [request.outbox_id]) == [request.outbox_id]
    assert await pool.fetchval("SELECT lease_owner FROM deliveries WHERE id = $1",
                               request.message.delivery_id) is None
    monkeypatch.undo()
    # nobody retries the wake-up (the dispatcher died with it): the relay publishes the row
    await ensure_topics(kafka_bootstrap, topic_prefix, 4)
    publisher = KafkaPublisher(kafka_bootstrap, topic_prefix, 4)
    try:
        assert await OutboxRelay(pool, publisher, min_age_s=0).relay_once() >= 1
    finally:
        await publisher.stop()
    assert await _outbox_left(pool, [request.outbox_id]) == []
    found = await read_deliveries_by_id(kafka_bootstrap, f"{topic_prefix}deliveries",
                                        {request.message.delivery_id}, timeout_s=10)
    copy = found[request.message.delivery_id][1]             # ...and the Kafka copy is claimed
    result = await store.claim([Pending(Ticket("t", 0, 1), copy)])
    assert [c.delivery_id for c in result.claimed] == [request.message.delivery_id]


async def test_a_claim_does_not_wait_for_a_relay_publishing_the_row(
        pool: asyncpg.Pool, seed: Seeder) -> None:
    ep = await seed.endpoint("http://x.test/")
    request = await _wakeup(pool, await seed.event([ep], publish=False), ep, 0)
    relay = await pool.acquire()
    try:
        tx = relay.transaction()
        await tx.start()
        await relay.fetch("SELECT id FROM outbox WHERE id = $1 FOR UPDATE SKIP LOCKED",
                          request.outbox_id)               # as lock_due_outbox does
        result = await asyncio.wait_for(ClaimStore(pool, "me", CFG).claim([request]), 5)
        assert len(result.claimed) == 1
        assert request.outbox_id is not None
        assert await _outbox_left(pool, [request.outbox_id]) == [request.outbox_id]
        await relay.execute("DELETE FROM outbox WHERE id = $1", request.outbox_id)
        await tx.commit()                                   # published: the relay deletes it
    finally:
        await pool.release(relay)
    assert await _outbox_left(pool, [request.outbox_id]) == []


async def _last_query(database_url: str, pid: int) -> str:
    conn = await asyncpg.connect(database_url)
    try:
        return str(await conn.fetchval("SELECT query FROM pg_stat_activity WHERE pid = $1",
                                       pid))
    finally:
        await conn.close()


async def test_a_settled_release_skips_the_probe_and_a_failed_one_still_discards(
        database_url: str) -> None:
    pool = await create_pool(database_url, min_size=1, max_size=1)
    try:
        async with acquire_settled(pool) as conn:
            pid = conn.get_server_pid()
            await conn.execute("SELECT 'settled body'")
        assert await _last_query(database_url, pid) == "SELECT 'settled body'"
        with pytest.raises(LookupError):
            async with acquire_settled(pool) as conn:
                assert conn.get_server_pid() == pid
                await conn.execute("SELECT 'failed body'")
                raise LookupError
        assert await _last_query(database_url, pid) == "SELECT 1"   # the probe ran
        # a body that fails with a statement still running: the probe finds the connection
        # busy and the pool closes it instead of handing it out again
        with pytest.raises((LookupError, asyncpg.InterfaceError)):
            async with acquire_settled(pool) as conn:
                busy = asyncio.ensure_future(conn.fetchval("SELECT pg_sleep(3)"))
                await asyncio.sleep(0.2)
                raise LookupError
        busy.cancel()
        await asyncio.gather(busy, return_exceptions=True)
        async with pool.acquire() as conn:
            assert conn.get_server_pid() != pid
            assert await conn.fetchval("SELECT 41 + 1") == 42
    finally:
        await pool.close()


async def test_a_row_nobody_claimed_is_relayed_once_due(
        pool: asyncpg.Pool, kafka_bootstrap: str, topic_prefix: str) -> None:
    """The fallback of a lost wake-up: the relay loop reports the backlog every round with
    one statement and publishes (then deletes) a row once it is ``min_age_s`` old."""
    message = DeliveryMessage(new_id("dlv"), new_id("evt"), new_id("ep"), "acct", None, None)
    async with pool.acquire() as conn, conn.transaction():
        [outbox_id] = await insert_outbox(
            conn, [Message("deliveries", message.key, encode_delivery_message(message))])
    backlog: list[int] = []
    await ensure_topics(kafka_bootstrap, topic_prefix, 4)
    publisher = KafkaPublisher(kafka_bootstrap, topic_prefix, 4)
    relay = OutboxRelay(pool, publisher, min_age_s=2.5, interval_s=0.2,
                        on_backlog=backlog.append)
    relay.start()
    try:
        await _until(lambda: len(backlog) >= 2)
        assert await _outbox_left(pool, [outbox_id]) == [outbox_id]    # not due yet
        assert backlog[0] >= 1
        found = await read_deliveries_by_id(kafka_bootstrap, f"{topic_prefix}deliveries",
                                            {message.delivery_id}, timeout_s=10)
        assert found[message.delivery_id][1] == message
        await _until(lambda: backlog[-1] == 0)
    finally:
        await relay.stop()
        await publisher.stop()
    assert await _outbox_left(pool, [outbox_id]) == []
