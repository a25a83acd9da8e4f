"""Endpoint changes made from the console and the portal: the shared endpoint operations
(:mod:`shared.endpoints.operations`, the same code the ingest API runs) plus an audit row, in
one transaction. ``account_id`` scopes a portal call to the merchant's own endpoints (another
account's endpoint is a 404); the console passes None.

Audit actions: ``endpoint.create``, ``endpoint.update``, ``endpoint.enable``,
``endpoint.disable``, ``endpoint.secret.rotate``, ``endpoint.secret.reveal``,
``endpoint.test_event``; the target is the endpoint id.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import asyncpg

from services.dlq_replay.audit import write_audit
from services.dlq_replay.context import AdminContext
from shared.adapters.dns import resolve_host
from shared.adapters.pg.txn import in_transaction
from shared.endpoints import operations as ops
from shared.endpoints.test_event import TEST_EVENT_TYPE, TestEvent, insert_test_event
from shared.endpoints.validation import EndpointSpec, check_url_target
from shared.logging import fields

log = logging.getLogger(__name__)
T = TypeVar("T")


async def _audited(ctx: AdminContext, *, actor: str, action: str, target: str,
                   reason: str | None, work: Callable[[asyncpg.Connection],
                                                      Awaitable[tuple[T, dict[str, Any]]]]) -> T:
    """Run ``work`` and write its audit row (``work`` returns its result and the details)."""

    async def run(conn: asyncpg.Connection) -> T:
        result, details = await work(conn)
        await write_audit(conn, operator=actor, action=action, target=target, reason=reason,
                          details=details)
        return result

    result = await in_transaction(ctx.pool, run)
    log.info("endpoint %s", action, extra=fields(endpoint_id=target, operator=actor))
    return result


async def create_endpoint(ctx: AdminContext, *, actor: str,
                          spec: EndpointSpec) -> ops.CreatedEndpoint:
    """Create an endpoint (URL checked against the SSRF rules first)."""
    await check_url_target(spec.url, allow_private=ctx.settings.common.allow_private_targets,
                           resolve=resolve_host)

    async def run(conn: asyncpg.Connection) -> ops.CreatedEndpoint:
        created = await ops.create_endpoint(conn, spec)
        await write_audit(conn, operator=actor, action="endpoint.create",
                          target=created.row["id"], reason=None,
                          details={"account_id": spec.account_id, "url": spec.url,
                                   "event_types": list(spec.event_types)})
        return created

    result = await in_transaction(ctx.pool, run)
    log.info("endpoint endpoint.create", extra=fields(endpoint_id=result.row["id"],
                                                      operator=actor))
    return result


async def update_endpoint(ctx: AdminContext, *, actor: str, endpoint_id: str,
                          changes: dict[str, Any], account_id: str | None) -> asyncpg.Record:
    """Apply validated changes (``validate_patch``); a new URL, or the stored one when the
    change re-enables, passes the SSRF guard first."""
    await ops.check_patch_target(ctx.pool, endpoint_id, changes,
                                 allow_private=ctx.settings.common.allow_private_targets,
                                 resolve=resolve_host, account_id=account_id)

    async def work(conn: asyncpg.Connection) -> tuple[asyncpg.Record, dict[str, Any]]:
        row = await ops.patch_endpoint(conn, endpoint_id, changes, account_id=account_id)
        return row, {"account_id": row["account_id"], "changes": changes}

    return await _audited(ctx, actor=actor, action="endpoint.update", target=endpoint_id,
                          reason=None, work=work)


async def set_enabled(ctx: AdminContext, *, actor: str, endpoint_id: str, enabled: bool,
                      account_id: str | None, reason: str | None = None) -> asyncpg.Record:
    """Enable (circuit reset, reason cleared; the stored URL must pass today's SSRF guard) or
    disable (reason ``manual``) an endpoint."""
    await ops.check_patch_target(ctx.pool, endpoint_id, {"enabled": enabled},
                                 allow_private=ctx.settings.common.allow_private_targets,
                                 resolve=resolve_host, account_id=account_id)

    async def work(conn: asyncpg.Connection) -> tuple[asyncpg.Record, dict[str, Any]]:
        row = await ops.patch_endpoint(conn, endpoint_id, {"enabled": enabled},
                                       account_id=account_id)
        return row, {"account_id": row["account_id"], "enabled": enabled}

    return await _audited(ctx, actor=actor,
                          action="endpoint.enable" if enabled else "endpoint.disable",
                          target=endpoint_id, reason=reason, work=work)


async def rotate_secret(ctx: AdminContext, *, actor: str, endpoint_id: str, grace_period_s: int,
                        account_id: str | None) -> str:
    """A new secret; the old one keeps signing for ``grace_period_s``. Returns the new one."""

    async def work(conn: asyncpg.Connection) -> tuple[str, dict[str, Any]]:
        owner, secret = await ops.rotate_endpoint_secret(conn, endpoint_id, grace_period_s,
                                                         account_id=account_id)
        return secret, {"account_id": owner, "grace_period_s": grace_period_s}

    return await _audited(ctx, actor=actor, action="endpoint.secret.rotate", target=endpoint_id,
                          reason=None, work=work)


async def reveal_secret(ctx: AdminContext, *, actor: str, endpoint_id: str,
                        account_id: str | None) -> str:
    """The current secret; every reveal is audited."""

    async def work(conn: asyncpg.Connection) -> tuple[str, dict[str, Any]]:
        secret = await ops.reveal_secret(conn, endpoint_id, account_id=account_id)
        return secret, {"account_id": account_id}

    return await _audited(ctx, actor=actor, action="endpoint.secret.reveal", target=endpoint_id,
                          reason=None, work=work)


async def send_test_event(ctx: AdminContext, *, actor: str, endpoint_id: str,
                          account_id: str | None) -> TestEvent:
    """Store a ``postwire.test`` event for this endpoint only and publish it after commit."""

    async def work(conn: asyncpg.Connection) -> tuple[TestEvent, dict[str, Any]]:
        row = await ops.fetch_endpoint(conn, endpoint_id, account_id=account_id)
        made = await insert_test_event(conn, endpoint_id=endpoint_id,
                                       account_id=row["account_id"], sent_by=actor)
        return made, {"account_id": row["account_id"], "event_id": made.event_id,
                      "delivery_id": made.delivery_id, "type": TEST_EVENT_TYPE}

    made = await _audited(ctx, actor=actor, action="endpoint.test_event", target=endpoint_id,
                          reason=None, work=work)
    ctx.flusher.submit(made.outbox_ids, made.messages)
    return made
