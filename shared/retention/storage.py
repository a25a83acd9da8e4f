"""Storage per table and the oldest retained day, for the admin stats endpoint."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import asyncpg

from shared.core.ids import id_unix_ms
from shared.core.retention import RetentionPolicy
from shared.core.timefmt import format_ts
from shared.retention import horizon

# The tables that grow with traffic; partitioned ones are summed over their partitions.
TABLES = ("events", "deliveries", "attempts", "dead_letters", "audit_log", "outbox",
          "idempotency_keys", "replay_jobs", "replay_job_items")

async def storage_stats(pool: asyncpg.Pool, policy: RetentionPolicy) -> dict[str, Any]:
    """``{"tables": [...], "oldest_retained_day", "oldest_event_at", "retention", "horizon"}``.

    Per table: bytes of heap (with TOAST), of indexes, and in all, approximate rows (planner
    statistics: cheap at any size) and partitions. The oldest retained day is the UTC day of
    the oldest event still stored (read from the smallest id, one index probe).
    """
    rows = await pool.fetch(
        "SELECT t.name, count(*) FILTER (WHERE l.relid <> to_regclass(t.name)) AS partitions,"
        " coalesce(sum(pg_table_size(l.relid)), 0) AS table_bytes,"
        " coalesce(sum(pg_indexes_size(l.relid)), 0) AS index_bytes,"
        " coalesce(sum(greatest(c.reltuples, 0)), 0)::bigint AS approx_rows"
        " FROM unnest($1::text[]) AS t(name)"
        " CROSS JOIN LATERAL (SELECT relid FROM pg_partition_tree(to_regclass(t.name))"
        "                      WHERE isleaf"
        "                     UNION ALL SELECT oid FROM pg_class"
        "                      WHERE oid = to_regclass(t.name) AND relkind = 'r') AS l"
        " JOIN pg_class c ON c.oid = l.relid"
        " GROUP BY t.name", list(TABLES))
    by_name = {r["name"]: r for r in rows}
    tables = []
    for name in TABLES:
        row = by_name.get(name)
        if row is None:
            continue
        table_bytes, index_bytes = int(row["table_bytes"]), int(row["index_bytes"])
        tables.append({"table": name, "partitions": int(row["partitions"]),
                       "table_bytes": table_bytes, "index_bytes": index_bytes,
                       "total_bytes": table_bytes + index_bytes,
                       "approx_rows": int(row["approx_rows"])})
    oldest_id = await pool.fetchval("SELECT id FROM events ORDER BY id LIMIT 1")
    oldest_at = None
    if isinstance(oldest_id, str) and (ms := id_unix_ms(oldest_id)) is not None:
        oldest_at = datetime.fromtimestamp(ms / 1000, UTC)
    return {
        "tables": tables,
        "oldest_retained_day": None if oldest_at is None else oldest_at.date().isoformat(),
        "oldest_event_at": format_ts(oldest_at),
        "retention": {"events_days": policy.history_days,
                      "dead_letter_days": policy.dead_letter_days,
                      "audit_days": policy.audit_days,
                      "partition_ahead_days": policy.ahead_days,
                      "account_days": dict(policy.account_days)},
        "horizon": {family: format_ts(await horizon.read(pool, family))
                    for family in ("events", "dead_letters", "audit_log")},
    }
