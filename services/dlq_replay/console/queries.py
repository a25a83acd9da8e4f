"""Read queries behind the console and portal pages that the admin API has no route for:
endpoints with their health, event search, bulk replay jobs, an endpoint's deliveries and one
delivery with its attempts. Every portal query takes the account and filters by it in SQL.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from services.dlq_replay.jobs import job_json
from services.dlq_replay.reads import attempt_json
from shared.adapters.pg.where import Where
from shared.core.delivery_status import OPEN_SQL
from shared.core.errors import NotFound
from shared.core.ids import lowest_id_at
from shared.core.paging import page_of
from shared.core.timefmt import format_ts
from shared.endpoints.operations import render_endpoint

PAGE_ROWS = 50

_ENDPOINTS_SELECT = f"""
SELECT e.id, e.account_id, e.url, e.event_types, e.description, e.enabled, e.disabled_reason,
       e.rate_limit_per_s, e.max_in_flight, e.metadata, e.created_at, e.updated_at,
       coalesce(h.consecutive_failures, 0) AS consecutive_failures, h.failing_since,
       h.circuit_open_until, coalesce(h.circuit_open_until > now(), false) AS circuit_open,
       coalesce(h.probe_until > now(), false) AS probing,
       CASE WHEN e.previous_secret_expires_at > now() THEN e.previous_secret_expires_at END
           AS previous_secret_until,
       (SELECT count(*) FROM deliveries d WHERE d.endpoint_id = e.id
          AND d.status IN {OPEN_SQL} AND d.lease_until > now()) AS in_flight,
       (SELECT count(*) FROM deliveries d WHERE d.endpoint_id = e.id
          AND d.status IN {OPEN_SQL}) AS waiting
FROM endpoints e LEFT JOIN endpoint_health h ON h.endpoint_id = e.id
"""


def cut_page(rows: list[dict[str, Any]], limit: int = PAGE_ROWS) -> tuple[list[dict[str, Any]],
                                                                          str | None]:
    """Rows fetched with ``limit + 1`` cut to ``limit``, and the id to continue below (None on
    the last page): :func:`shared.core.paging.page_of` with the bare id as the cursor."""
    page = page_of(rows, limit, dict, lambda last: str(last["id"]))
    return page.data, page.next_cursor


def endpoint_health_json(row: Mapping[str, Any]) -> dict[str, Any]:
    """An endpoint with its health: circuit (``closed``, ``open``, ``half_open``), failures,
    attempts in flight, deliveries waiting, and until when a rotated-out secret still signs."""
    circuit = "open" if row["circuit_open"] else "half_open" if row["probing"] else "closed"
    return {**render_endpoint(row), "circuit": circuit,
            "circuit_open_until": format_ts(row["circuit_open_until"]),
            "consecutive_failures": row["consecutive_failures"],
            "failing_since": format_ts(row["failing_since"]),
            "in_flight": row["in_flight"], "waiting": row["waiting"],
            "previous_secret_until": format_ts(row["previous_secret_until"])}


async def endpoints_with_health(pool: asyncpg.Pool, *, account_id: str | None = None,
                                endpoint_id: str | None = None, before: str | None = None,
                                limit: int = PAGE_ROWS) -> list[dict[str, Any]]:
    """Live endpoints, newest first (ids below ``before``), optionally of one account or id."""
    where = Where()
    where.fixed("e.deleted_at IS NULL")
    where.eq("e.account_id", account_id)
    where.eq("e.id", endpoint_id)
    where.when("e.id < {}", before)
    rows = await pool.fetch(
        f"{_ENDPOINTS_SELECT} {where.sql()} ORDER BY e.id DESC LIMIT {where.param(limit)}",
        *where.args)
    return [endpoint_health_json(r) for r in rows]


@dataclass(frozen=True)
class EventSearch:
    """Console event search; ``since``/``until`` bound the acceptance time (ids sort by it)."""

    account_id: str | None = None
    type: str | None = None
    since: datetime | None = None
    until: datetime | None = None


def _ms(value: datetime) -> int:
    return int(value.timestamp() * 1000)


async def search_events(pool: asyncpg.Pool, search: EventSearch, before: str | None = None,
                        limit: int = PAGE_ROWS) -> list[dict[str, Any]]:
    """Matching events, newest first, ids below ``before`` (id range for the time bounds:
    index scans only)."""
    since = lowest_id_at("evt", _ms(search.since)) if search.since else None
    until = lowest_id_at("evt", _ms(search.until)) if search.until else None
    if before is not None and (until is None or before < until):
        until = before
    where = Where()
    where.eq("account_id", search.account_id)
    where.eq("type", search.type)
    where.when("id >= {}", since)
    where.when("id < {}", until)
    rows = await pool.fetch(
        "SELECT id, account_id, type, ordering_key, created_at, delivery_count FROM events"
        f" {where.sql()} ORDER BY id DESC LIMIT {where.param(limit)}", *where.args)
    return [{"id": r["id"], "account_id": r["account_id"], "type": r["type"],
             "ordering_key": r["ordering_key"], "created_at": format_ts(r["created_at"]),
             "delivery_count": r["delivery_count"]} for r in rows]


async def bulk_jobs(pool: asyncpg.Pool, limit: int = PAGE_ROWS) -> list[dict[str, Any]]:
    """The latest bulk replays, newest first."""
    rows = await pool.fetch(
        "SELECT id, kind, status, reason, created_by, filter, max_per_second, matched, queued,"
        " skipped, position, last_error, created_at, updated_at, finished_at FROM replay_jobs"
        " WHERE kind = 'bulk' ORDER BY created_at DESC, id DESC LIMIT $1", limit)
    return [job_json(r) for r in rows]


async def jobs_progress(pool: asyncpg.Pool, job_ids: list[str]) -> list[dict[str, Any]]:
    """The named replay jobs (unknown ids are left out)."""
    rows = await pool.fetch(
        "SELECT id, kind, status, reason, created_by, filter, max_per_second, matched, queued,"
        " skipped, position, last_error, created_at, updated_at, finished_at FROM replay_jobs"
        " WHERE id = ANY($1::text[]) ORDER BY id", job_ids)
    return [job_json(r) for r in rows]


def _delivery_row_json(row: Mapping[str, Any]) -> dict[str, Any]:
    return {"id": row["id"], "event_id": row["event_id"], "endpoint_id": row["endpoint_id"],
            "type": row["type"], "status": row["status"], "attempt_count": row["attempt_count"],
            "last_attempt_at": format_ts(row["last_attempt_at"]),
            "next_attempt_at": format_ts(row["next_attempt_at"]),
            "last_status_code": row["last_status_code"], "last_error": row["last_error"],
            "created_at": format_ts(row["created_at"])}


async def endpoint_deliveries(pool: asyncpg.Pool, *, account_id: str, endpoint_id: str,
                              status: str | None = None, before: str | None = None,
                              limit: int = PAGE_ROWS) -> list[dict[str, Any]]:
    """Deliveries to one of ``account_id``'s endpoints, newest first: ids below ``before``,
    optionally only those in ``status``."""
    where = Where()
    where.add("d.endpoint_id = {}", endpoint_id)
    where.add("d.account_id = {}", account_id)
    where.when("d.id < {}", before)
    where.eq("d.status", status)
    rows = await pool.fetch(
        "SELECT d.*, ev.type FROM deliveries d JOIN events ev ON ev.id = d.event_id"
        f" {where.sql()} ORDER BY d.id DESC LIMIT {where.param(limit)}", *where.args)
    return [_delivery_row_json(r) for r in rows]


async def account_delivery(pool: asyncpg.Pool, *, account_id: str,
                           delivery_id: str) -> dict[str, Any]:
    """One delivery of ``account_id`` with its event data and attempts; NotFound otherwise
    (also for another account's delivery)."""
    async with pool.acquire() as conn, conn.transaction(readonly=True,
                                                        isolation="repeatable_read"):
        row = await conn.fetchrow(
            "SELECT d.*, ev.type, ev.body FROM deliveries d JOIN events ev ON ev.id = d.event_id"
            " WHERE d.id = $1 AND d.account_id = $2", delivery_id, account_id)
        if row is None:
            raise NotFound(f"no delivery {delivery_id}", param="delivery_id")
        attempts = await conn.fetch(
            "SELECT * FROM attempts WHERE delivery_id = $1 ORDER BY attempt", delivery_id)
    return {**_delivery_row_json(row), "body": bytes(row["body"]).decode("utf-8", "replace"),
            "attempts": [attempt_json(a) for a in attempts]}
