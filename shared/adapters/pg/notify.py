"""Change notifications between processes over Postgres ``LISTEN``/``NOTIFY``.

Channel ``postwire_endpoints``: payload is an account id whose endpoints changed (created,
patched, deleted, secret rotated, or disabled by a dispatcher). Every process that caches
endpoint configuration listens and drops that account's entries.
"""

from __future__ import annotations

import asyncpg

ENDPOINTS_CHANNEL = "postwire_endpoints"


async def notify_endpoints_changed(conn: asyncpg.Connection, account_id: str) -> None:
    """Queue a ``postwire_endpoints`` notification naming ``account_id``.

    Postgres delivers it to every listener when, and only if, the surrounding transaction
    commits (outside a transaction: at once). Call it in the transaction of every change to an
    account's endpoints, the dispatcher's auto-disable included. May raise asyncpg errors.
    """
    await conn.execute("SELECT pg_notify($1, $2)", ENDPOINTS_CHANNEL, account_id)
