"""The endpoint operations every API runs, each inside the caller's transaction.

The ingest API (``/v1/endpoints``) and the admin service's console and merchant portal call
these, so an endpoint is created, changed, disabled or rotated the same way whoever asks. Each
function takes a connection inside an open transaction (the caller may add an audit row to it),
notifies every process's endpoint cache in that transaction, and raises :class:`NotFound` for
an unknown or deleted endpoint. With ``account_id`` set, an endpoint of another account is
also a :class:`NotFound` (a merchant cannot even learn that it exists). URL targets are checked
(DNS, SSRF) by :func:`shared.endpoints.validation.check_url_target` *before* the transaction.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import asyncpg

from shared.adapters.dns import Resolver
from shared.core.errors import NotFound
from shared.core.ids import is_valid_id, new_id
from shared.core.signing import generate_secret
from shared.core.timefmt import format_ts, utcnow
from shared.endpoints import store
from shared.endpoints.validation import EndpointSpec, check_url_target


def render_endpoint(row: Mapping[str, Any]) -> dict[str, Any]:
    """The public endpoint object of a row from :mod:`store` (never the secret)."""
    return {
        "id": row["id"],
        "account_id": row["account_id"],
        "url": row["url"],
        "event_types": list(row["event_types"]),
        "description": row["description"],
        "enabled": row["enabled"],
        "status": "enabled" if row["enabled"] else "disabled",
        "disabled_reason": row["disabled_reason"],
        "rate_limit_per_s": row["rate_limit_per_s"],
        "max_in_flight": row["max_in_flight"],
        "metadata": row["metadata"],
        "created_at": format_ts(row["created_at"]),
        "updated_at": format_ts(row["updated_at"]),
    }


def not_found(endpoint_id: str) -> NotFound:
    """The 404 of an endpoint that does not exist (or that the caller may not see)."""
    return NotFound(f"no endpoint {endpoint_id!r}")


def checked_id(endpoint_id: str) -> str:
    """``endpoint_id`` if it is well formed; a malformed id is a 404 like an unknown one."""
    if not is_valid_id(endpoint_id, "ep"):
        raise not_found(endpoint_id)
    return endpoint_id


@dataclass(frozen=True)
class CreatedEndpoint:
    """A new endpoint's row and its secret (shown once, on creation)."""

    row: asyncpg.Record
    secret: str


async def create_endpoint(conn: asyncpg.Connection, spec: EndpointSpec) -> CreatedEndpoint:
    """Insert the endpoint (secret generated unless the spec has one) and notify the caches."""
    secret = spec.secret or generate_secret()
    row = await store.insert_endpoint(conn, new_id("ep"), spec, secret, utcnow())
    await store.notify_endpoints_changed(conn, spec.account_id)
    return CreatedEndpoint(row, secret)


async def fetch_endpoint(conn: asyncpg.Connection, endpoint_id: str, *,
                         account_id: str | None = None,
                         for_update: bool = False) -> asyncpg.Record:
    """The live endpoint (of ``account_id`` when given); NotFound otherwise."""
    row = await store.get_endpoint(conn, checked_id(endpoint_id), for_update=for_update)
    if row is None or (account_id is not None and row["account_id"] != account_id):
        raise not_found(endpoint_id)
    return row


async def patch_endpoint(conn: asyncpg.Connection, endpoint_id: str,
                         changes: Mapping[str, Any], *,
                         account_id: str | None = None) -> asyncpg.Record:
    """Apply validated ``changes`` (see ``validate_patch``); returns the new row.

    Empty ``changes`` return the row untouched. Enabling resets the circuit; disabling records
    ``disabled_reason: "manual"`` (see :func:`store.update_endpoint`).
    """
    row = await fetch_endpoint(conn, endpoint_id, account_id=account_id,
                               for_update=bool(changes))
    if not changes:
        return row
    row = await store.update_endpoint(conn, row, changes, utcnow())
    await store.notify_endpoints_changed(conn, row["account_id"])
    return row


async def check_patch_target(pool: asyncpg.Pool, endpoint_id: str, changes: Mapping[str, Any], *,
                             allow_private: bool, resolve: Resolver,
                             account_id: str | None = None) -> None:
    """Run the SSRF guard a patch needs, before its transaction: on a new ``url``, or on the
    stored URL when the patch re-enables the endpoint (it may predate the guard or a stricter
    setting, or its name may resolve privately now). Raises InvalidRequest (``url``) or
    NotFound."""
    if "url" in changes:
        await check_url_target(changes["url"], allow_private=allow_private, resolve=resolve)
    elif changes.get("enabled") is True:
        async with pool.acquire() as conn:
            current = await fetch_endpoint(conn, endpoint_id, account_id=account_id)
        await check_url_target(current["url"], allow_private=allow_private, resolve=resolve)


async def delete_endpoint(conn: asyncpg.Connection, endpoint_id: str, *,
                          account_id: str | None = None) -> tuple[str, int]:
    """Soft-delete; its pending and retrying deliveries become ``cancelled``.

    Returns ``(account_id, cancelled deliveries)``.
    """
    await fetch_endpoint(conn, endpoint_id, account_id=account_id, for_update=True)
    deleted = await store.soft_delete_endpoint(conn, endpoint_id, utcnow())
    if deleted is None:
        raise not_found(endpoint_id)
    await store.notify_endpoints_changed(conn, deleted[0])
    return deleted


async def reveal_secret(conn: asyncpg.Connection, endpoint_id: str, *,
                        account_id: str | None = None) -> str:
    """The endpoint's current signing secret."""
    await fetch_endpoint(conn, endpoint_id, account_id=account_id)
    secret = await store.get_secret(conn, endpoint_id)
    if secret is None:
        raise not_found(endpoint_id)
    return secret


async def rotate_endpoint_secret(conn: asyncpg.Connection, endpoint_id: str,
                                 grace_period_s: int, *,
                                 account_id: str | None = None) -> tuple[str, str]:
    """Generate a new secret; the old one keeps signing for ``grace_period_s`` seconds.

    Returns ``(account_id, new secret)``.
    """
    await fetch_endpoint(conn, endpoint_id, account_id=account_id, for_update=True)
    secret = generate_secret()
    owner = await store.rotate_secret(conn, endpoint_id, secret, grace_period_s, utcnow())
    if owner is None:
        raise not_found(endpoint_id)
    await store.notify_endpoints_changed(conn, owner)
    return owner, secret
