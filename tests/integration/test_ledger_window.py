"""The ledger statement (services/dlq_replay/ledger_sql.py) on the real Postgres: every shape
of window (open, from only, to only, both) counts exactly its own rows, from one snapshot."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import asyncpg

from services.dlq_replay.ledger_sql import oldest_open, read_ledger
from shared.core.ledger import Ledger
from tests.support.dispatch import Event, Seeder


def figures(ledger: Ledger) -> tuple[int, int, dict[str, int], int, str | None]:
    oldest = ledger.oldest_open.delivery_id if ledger.oldest_open else None
    return (ledger.events_accepted, ledger.deliveries_created, ledger.by_status,
            ledger.dead_without_dead_letter, oldest)


def counts(**nonzero: int) -> dict[str, int]:
    return {status: nonzero.get(status, 0)
            for status in ("pending", "retrying", "succeeded", "dead", "cancelled")}


async def test_each_window_shape_counts_its_own_rows(pool: asyncpg.Pool, seed: Seeder) -> None:
    ep = await seed.endpoint("http://x.test/")
    before = datetime.now(UTC)
    early = [await seed.event([ep], publish=False) for _ in range(3)]
    await asyncio.sleep(0.01)
    middle = datetime.now(UTC)
    await asyncio.sleep(0.01)
    late = [await seed.event([ep], publish=False) for _ in range(2)]
    after = datetime.now(UTC) + timedelta(milliseconds=1)

    def delivery(event: Event) -> str:
        return event.delivery_ids[ep.id]

    for event, status in ((early[0], "succeeded"), (early[1], "dead"), (late[0], "retrying"),
                          (late[1], "cancelled")):  # early[2] stays pending
        await pool.execute("UPDATE deliveries SET status = $2 WHERE id = $1",
                           delivery(event), status)

    everything = figures(await read_ledger(pool, None, None))
    assert everything == (5, 5, counts(pending=1, retrying=1, succeeded=1, dead=1, cancelled=1),
                          1, delivery(early[2]))
    first = (3, 3, counts(pending=1, succeeded=1, dead=1), 1, delivery(early[2]))
    assert figures(await read_ledger(pool, before, middle)) == first
    assert figures(await read_ledger(pool, None, middle)) == first
    second = (2, 2, counts(retrying=1, cancelled=1), 0, delivery(late[0]))
    assert figures(await read_ledger(pool, middle, None)) == second
    assert figures(await read_ledger(pool, middle, after)) == second
    nothing = (0, 0, counts(), 0, None)
    assert figures(await read_ledger(pool, after, None)) == nothing
    assert figures(await read_ledger(pool, before - timedelta(days=2),
                                     before - timedelta(days=1))) == nothing  # ids out of range

    oldest = await oldest_open(pool)
    assert oldest is not None and oldest.delivery_id == delivery(early[2])
    assert oldest.status == "pending" and oldest.age_s >= 0
