"""Ledger assertion for tests that run Postwire through a fault (kill, restart, broker loss).

``await assert_ledger_balances(database_url)`` reads the platform's ledger (the same code as
``GET /admin/v1/ledger``) over the whole database and fails with every broken invariant when
it does not balance: deliveries created = succeeded + dead + cancelled + open, and every dead
delivery has its dead-letter record. ``open_allowed=False`` also requires that nothing is
left pending or retrying (a test that waited for every delivery to finish).
"""

from __future__ import annotations

import asyncpg

from services.dlq_replay.ledger_sql import read_ledger
from shared.core.ledger import Ledger


async def read_whole_ledger(db: str | asyncpg.Pool | asyncpg.Connection) -> Ledger:
    """The ledger of everything ever accepted in ``db`` (a DSN, pool or connection)."""
    if isinstance(db, str):
        conn = await asyncpg.connect(db)
        try:
            return await read_ledger(conn, None, None)
        finally:
            await conn.close()
    return await read_ledger(db, None, None)


async def assert_ledger_balances(db: str | asyncpg.Pool | asyncpg.Connection, *,
                                 open_allowed: bool = True) -> Ledger:
    """Fail unless the ledger balances (and, with ``open_allowed=False``, nothing is open);
    returns the ledger for further checks."""
    ledger = await read_whole_ledger(db)
    broken = [c.detail for c in ledger.checks if not c.holds]
    assert not broken, f"the ledger does not balance: {broken}"
    assert ledger.events_accepted > 0, "the ledger is empty: nothing was accepted"
    if not open_allowed:
        assert ledger.open == 0, (f"{ledger.open} deliveries are still open, oldest "
                                  f"{ledger.oldest_open}")
    return ledger
