"""The outcome transaction: record a batch of finished attempts in one commit.

Order inside the transaction (every dispatcher writer and claimer locks the same way, so they
cannot deadlock each other): endpoint_health rows in id order (only those whose health
changes; a success of a healthy endpoint locks nothing, so outcomes do not queue behind
claims), then the deliveries in id order.
A delivery whose lease this dispatcher no longer holds (cancelled, or taken over after the
lease expired) still gets its attempt row (and counts in ``attempt_count``), but its status,
its retry round and its ``last_*`` fields are left to whoever owns it now.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import asyncpg

from services.dispatcher.deadletters import kill_waiting, record_dead_letters
from services.dispatcher.endpoint_health_plan import HealthChange
from services.dispatcher.model import Finished
from shared.adapters.kafka.publisher import Message
from shared.adapters.pg.announce import delivery_record
from shared.adapters.pg.notify import notify_endpoints_changed
from shared.core.backoff import EndpointHealth
from shared.core.decision import Dead, RetryAt, Succeeded
from shared.core.delivery_status import OPEN_SQL
from shared.core.ids import new_id

READ_HEALTH_SQL = """
SELECT endpoint_id, consecutive_failures, failing_since, circuit_open_until,
       statement_timestamp() AS now
FROM endpoint_health WHERE endpoint_id = ANY($1::text[]) ORDER BY endpoint_id
"""

LOCK_HEALTH_SQL = READ_HEALTH_SQL + " FOR UPDATE"

# A health row a success leaves as it is (:func:`endpoint_health_plan.is_clean` in SQL).
CLEAN_HEALTH_SQL = ("consecutive_failures = 0 AND circuit_open_until IS NULL"
                    " AND failing_since IS NULL")

# One round trip for the whole batch: lock the deliveries in id order (every writer locks that
# way), apply each attempt's effect where this dispatcher still owns the delivery (lease held,
# still open), clear leases it held, and insert the attempt rows numbered by the new
# attempt_count. Ownership is read from the locked (latest) row versions, inside the statement.
# $11 and $12 bound the ids by the batch's smallest and largest: with a generic plan (the
# dispatcher's pool plans generically, see :func:`shared.adapters.pg.pool.create_pool`) these
# scalar bounds prune the day partitions when the executor starts, which the id array cannot.
# The guarded form (``{guard}`` filled in, $13 the batch's endpoint ids) writes nothing when one
# of those endpoints' health is not clean, and then answers a single row with ``dirty`` set.
_RECORD_TEMPLATE = f"""
WITH {{dirty}}u AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::float8[], $4::int[], $5::text[],
                         $6::timestamptz[], $7::int[], $8::text[], $9::text[])
         AS u(id, status, delay_s, status_code, error, started_at, duration_ms, excerpt,
              attempt_id)
),
locked AS (
    SELECT d.id, d.lease_owner IS NOT DISTINCT FROM $10 AS mine,
           (d.lease_owner IS NOT DISTINCT FROM $10 AND d.status IN {OPEN_SQL})
               AS owned
    FROM deliveries d WHERE d.id = ANY($1::text[]) AND d.id >= $11 AND d.id <= $12{{guard}}
    ORDER BY d.id FOR UPDATE
),
upd AS (
    UPDATE deliveries d SET
        attempt_count = d.attempt_count + 1,
        round_attempt_count = d.round_attempt_count + CASE WHEN l.owned THEN 1 ELSE 0 END,
        last_attempt_at = CASE WHEN l.owned THEN u.started_at ELSE d.last_attempt_at END,
        last_status_code = CASE WHEN l.owned THEN u.status_code ELSE d.last_status_code END,
        last_error = CASE WHEN l.owned THEN u.error ELSE d.last_error END,
        status = CASE WHEN l.owned THEN u.status ELSE d.status END,
        next_attempt_at = CASE WHEN NOT l.owned THEN d.next_attempt_at
                               WHEN u.delay_s IS NULL THEN NULL
                               ELSE now() + make_interval(secs => u.delay_s) END,
        lease_owner = CASE WHEN l.mine THEN NULL ELSE d.lease_owner END,
        lease_until = CASE WHEN l.mine THEN NULL ELSE d.lease_until END,
        updated_at = now()
    FROM u JOIN locked l ON l.id = u.id
    WHERE d.id = u.id AND d.id = ANY($1::text[]) AND d.id >= $11 AND d.id <= $12
    RETURNING d.id, d.attempt_count, l.owned, u.started_at, u.duration_ms, u.status_code,
              u.error, u.excerpt, u.attempt_id
),
inserted AS (
    INSERT INTO attempts (id, delivery_id, attempt, started_at, duration_ms, status_code, error,
                          response_excerpt)
    SELECT attempt_id, id, attempt_count, started_at, duration_ms, status_code, error, excerpt
    FROM upd
)
SELECT id, attempt_count, owned, false AS dirty FROM upd{{dirty_row}}
"""

_RECORD_SQL = _RECORD_TEMPLATE.format(dirty="", guard="", dirty_row="")

# Successes only, recorded in one statement (its own transaction, no BEGIN and COMMIT round
# trips) provided no endpoint's health changes: see :func:`record_plain_successes`.
_RECORD_IF_CLEAN_SQL = _RECORD_TEMPLATE.format(
    dirty=f"""dirty AS (
    SELECT EXISTS (SELECT 1 FROM endpoint_health WHERE endpoint_id = ANY($13::text[])
                   AND NOT ({CLEAN_HEALTH_SQL})) AS found
),
""",
    guard=" AND NOT (SELECT found FROM dirty)",
    dirty_row="\nUNION ALL SELECT NULL, NULL, NULL, true FROM dirty WHERE found",
)

_NEXT_IN_KEY_SQL = f"""
WITH heads AS (
    SELECT DISTINCT ON (d.endpoint_id, d.ordering_key) d.id
    FROM unnest($1::text[], $2::text[]) AS k(endpoint_id, ordering_key)
    JOIN deliveries d ON d.endpoint_id = k.endpoint_id AND d.ordering_key = k.ordering_key
    WHERE d.status IN {OPEN_SQL}
    ORDER BY d.endpoint_id, d.ordering_key, d.sequence
)
UPDATE deliveries d SET published_at = now() FROM heads WHERE d.id = heads.id
RETURNING d.id, d.event_id, d.endpoint_id, d.account_id, d.ordering_key, d.sequence,
          d.generation
"""

_SAVE_HEALTH_SQL = """
UPDATE endpoint_health h SET consecutive_failures = u.failures, failing_since = u.failing_since,
       circuit_open_until = u.open_until,
       probe_until = CASE WHEN u.clear_probe THEN NULL ELSE h.probe_until END, updated_at = now()
FROM unnest($1::text[], $2::int[], $3::timestamptz[], $4::timestamptz[], $5::bool[])
     AS u(endpoint_id, failures, failing_since, open_until, clear_probe)
WHERE h.endpoint_id = u.endpoint_id
"""

_DISABLE_SQL = """
UPDATE endpoints e SET enabled = false, disabled_reason = u.reason, updated_at = now()
FROM unnest($1::text[], $2::text[]) AS u(id, reason)
WHERE e.id = u.id AND e.enabled AND e.deleted_at IS NULL
RETURNING e.id, e.account_id
"""


@dataclass
class Recorded:
    """What the outcome transaction wrote, for metrics and the post-commit publish."""

    messages: list[Message] = field(default_factory=list)
    dead: dict[str, str] = field(default_factory=dict)          # delivery id -> reason
    disabled: dict[str, str] = field(default_factory=dict)      # endpoint id -> reason
    attempt_numbers: dict[str, int] = field(default_factory=dict)


def health_of(row: asyncpg.Record) -> EndpointHealth:
    return EndpointHealth(consecutive_failures=row["consecutive_failures"],
                          circuit_open_until=row["circuit_open_until"],
                          failing_since=row["failing_since"])


def _status_of(item: Finished) -> tuple[str, float | None]:
    decision = item.decision
    if isinstance(decision, Succeeded):
        return "succeeded", None
    if isinstance(decision, RetryAt):
        return "retrying", decision.delay_s
    return "dead", None


def _record_args(items: Sequence[Finished], owner: str) -> list[object]:
    """$1..$12 of the record statements, the deliveries in id order (the lock order)."""
    ordered = sorted(items, key=lambda i: i.claimed.delivery_id)
    statuses = [_status_of(i) for i in ordered]
    ids = [i.claimed.delivery_id for i in ordered]
    return [ids, [s for s, _ in statuses],
            [d for _, d in statuses], [i.result.status_code for i in ordered],
            [i.result.error for i in ordered], [i.started_at for i in ordered],
            [i.result.duration_ms for i in ordered], [i.result.response_excerpt for i in ordered],
            [new_id("att") for _ in ordered], owner, ids[0] if ids else "",
            ids[-1] if ids else ""]


async def update_deliveries(conn: asyncpg.Connection, items: Sequence[Finished],
                            owner: str) -> tuple[dict[str, int], set[str]]:
    """Write the attempts' effects; returns (attempt number per delivery, ids we owned)."""
    rows = await conn.fetch(_RECORD_SQL, *_record_args(items, owner))
    numbers = {r["id"]: r["attempt_count"] for r in rows}
    return numbers, {r["id"] for r in rows if r["owned"]}


async def record_plain_successes(conn: asyncpg.Connection, items: Sequence[Finished],
                                 owner: str) -> Recorded | None:
    """Record a batch of plain successes in one statement, outside any transaction block.

    ``items`` must pass :func:`endpoint_health_plan.plain_successes`: such a batch writes
    nothing but the deliveries and their attempt rows when its endpoints' health is clean (a
    success changes clean health in nothing), so the statement alone is the whole outcome
    transaction, one round trip instead of BEGIN, the health read, the record and COMMIT. When
    an endpoint's health is not clean (it is recovering, or another process just counted a
    failure), the statement writes nothing and None is returned: the caller records the batch
    through the full transaction (:func:`record_batch`), which locks and saves that health.
    Runs on a connection that is not inside a transaction (the statement must commit alone).
    """
    endpoint_ids = sorted({i.claimed.endpoint_id for i in items})
    rows = await conn.fetch(_RECORD_IF_CLEAN_SQL, *_record_args(items, owner), endpoint_ids)
    if any(r["dirty"] for r in rows):
        return None
    return Recorded(attempt_numbers={r["id"]: r["attempt_count"] for r in rows})


async def release_next_in_keys(conn: asyncpg.Connection,
                               keys: set[tuple[str, str]]) -> list[Message]:
    """Announce the next open delivery of each finished (endpoint, ordering key)."""
    if not keys:
        return []
    ordered = sorted(keys)
    rows = await conn.fetch(_NEXT_IN_KEY_SQL, [k[0] for k in ordered], [k[1] for k in ordered])
    return [delivery_record(r) for r in rows]


async def save_health(conn: asyncpg.Connection, changes: dict[str, HealthChange]) -> None:
    """Persist the changed endpoint health rows."""
    ids = sorted(e for e, c in changes.items() if c.changed)
    if ids:
        await conn.execute(
            _SAVE_HEALTH_SQL, ids, [changes[e].after.consecutive_failures for e in ids],
            [changes[e].after.failing_since for e in ids],
            [changes[e].after.circuit_open_until for e in ids],
            [changes[e].clear_probe for e in ids])


async def disable_endpoints(conn: asyncpg.Connection, reasons: dict[str, str],
                            owner: str) -> tuple[dict[str, str], list[Message]]:
    """Disable endpoints (410 or auto-disable), notify caches, dead-letter their waiting work."""
    if not reasons:
        return {}, []
    ids = sorted(reasons)
    rows = await conn.fetch(_DISABLE_SQL, ids, [reasons[e] for e in ids])
    for account_id in sorted({r["account_id"] for r in rows}):
        await notify_endpoints_changed(conn, account_id)
    disabled = {r["id"]: reasons[r["id"]] for r in rows}
    return disabled, await kill_waiting(conn, sorted(disabled), owner)


async def record_batch(conn: asyncpg.Connection, items: Sequence[Finished], owner: str,
                       changes: dict[str, HealthChange]) -> Recorded:
    """Everything but the health lock (taken by the caller, which planned ``changes``)."""
    out = Recorded()
    out.attempt_numbers, owned = await update_deliveries(conn, items, owner)
    finished_keys: set[tuple[str, str]] = set()
    for item in items:
        claimed = item.claimed
        if claimed.delivery_id not in owned:
            continue
        if isinstance(item.decision, Dead):
            out.dead[claimed.delivery_id] = item.decision.reason
        if claimed.ordering_key is not None and not isinstance(item.decision, RetryAt):
            finished_keys.add((claimed.endpoint_id, claimed.ordering_key))
    out.messages.extend(await record_dead_letters(conn, out.dead))
    out.messages.extend(await release_next_in_keys(conn, finished_keys))
    await save_health(conn, changes)
    reasons = {e: c.disable_reason for e, c in changes.items() if c.disable_reason}
    out.disabled, killed = await disable_endpoints(conn, reasons, owner)
    out.messages.extend(killed)
    return out

