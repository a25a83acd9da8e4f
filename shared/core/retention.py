"""Retention policy and the pure plan of partition maintenance.

Events, deliveries and attempts live in tables range-partitioned by UTC day of creation, read
from their ULIDs (events and deliveries by their own id, attempts by their delivery's id). A
*day unit* is the three partitions of one day (``events_p20261204``, ``deliveries_p20261204``,
``attempts_p20261204``), created ahead of time and dropped together once the whole day is older
than the retention. The *legacy unit* is the pre-partitioning tables (``<table>_legacy``, every
id below the cutover), handled like a day that ends at the cutover.

Nothing here does I/O: the shell (``shared/retention``) reads what exists, asks :func:`plan`
what to do and carries it out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from shared.core.ids import id_unix_ms, lowest_id_at

# (table, id prefix of its partition key): attempts are partitioned by delivery_id.
HISTORY_TABLES: tuple[tuple[str, str], ...] = (
    ("events", "evt"), ("deliveries", "dlv"), ("attempts", "dlv"))
_DAY_NAME = re.compile(r"^(?P<table>[a-z_]+)_p(?P<day>\d{8})$")


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    """How long history is kept. ``None`` means forever.

    ``history_days``: events with their deliveries and attempts (``POSTWIRE_RETENTION_DAYS``).
    ``dead_letter_days``: dead-letter records, counted from ``dead_at`` (their own clock: a
    dead letter outlives its event when this is longer). ``audit_days``: audit rows (default
    forever). ``ahead_days``: how many days of partitions exist ahead of today.
    ``account_days``: (account id, days) of accounts whose history is kept for fewer days
    than ``history_days`` (deleted row by row: days are dropped whole for every account).
    """

    history_days: int
    dead_letter_days: int | None
    audit_days: int | None
    ahead_days: int
    account_days: tuple[tuple[str, int], ...] = ()


def day_start(day: date) -> datetime:
    """UTC midnight at the start of ``day``."""
    return datetime.combine(day, time(0), tzinfo=UTC)


def partition_name(table: str, day: date) -> str:
    """``events_p20261204``: the partition of ``table`` for one UTC day."""
    return f"{table}_p{day:%Y%m%d}"


def parse_partition_day(name: str) -> tuple[str, date] | None:
    """``("events", date(2026, 12, 4))`` for ``events_p20261204``; None for other names."""
    match = _DAY_NAME.match(name)
    if match is None:
        return None
    try:
        day = datetime.strptime(match["day"], "%Y%m%d").date()
    except ValueError:
        return None
    return match["table"], day


@dataclass(frozen=True, slots=True)
class Unit:
    """One droppable unit: a day (``day`` set) or the legacy tables (``day`` None).

    ``lower``/``upper`` bound the creation times it holds (``lower`` None: since the
    beginning). ``tables`` are the partitions that exist, one per history table at most.
    """

    day: date | None
    lower: datetime | None
    upper: datetime
    tables: tuple[str, ...]

    @property
    def label(self) -> str:
        """``2026-12-04`` or ``legacy`` (for logs, metrics and the stats endpoint)."""
        return "legacy" if self.day is None else self.day.isoformat()

    def partition_of(self, table: str) -> str:
        """The partition name of ``table`` in this unit."""
        return f"{table}_legacy" if self.day is None else partition_name(table, self.day)


@dataclass(frozen=True, slots=True)
class Plan:
    """What one maintenance round should do.

    ``create``: (table, id prefix, day) partitions to create, oldest first. ``expired``:
    units whose whole range is past retention, oldest first; each is dropped only if nothing
    open still needs it (checked in Postgres by the shell). ``history_cutoff``: rows created
    before it are past retention.
    """

    create: tuple[tuple[str, str, date], ...]
    expired: tuple[Unit, ...]
    history_cutoff: datetime


def units_of(partitions: list[str], cutover: datetime | None) -> list[Unit]:
    """Group existing partition names into units, oldest first.

    ``cutover`` is where the legacy partitions end (None when there are none).
    """
    days: dict[date, list[str]] = {}
    legacy: list[str] = []
    for name in partitions:
        parsed = parse_partition_day(name)
        if parsed is not None and parsed[0] in {t for t, _ in HISTORY_TABLES}:
            days.setdefault(parsed[1], []).append(parsed[0])
        elif name in {f"{t}_legacy" for t, _ in HISTORY_TABLES}:
            legacy.append(name.removesuffix("_legacy"))
    units = []
    if legacy and cutover is not None:
        units.append(Unit(None, None, cutover, tuple(sorted(legacy))))
    for day in sorted(days):
        units.append(Unit(day, day_start(day), day_start(day + timedelta(days=1)),
                          tuple(sorted(days[day]))))
    return units


def plan(policy: RetentionPolicy, now: datetime, partitions: list[str],
         cutover: datetime | None) -> Plan:
    """The round's plan: partitions missing from yesterday (a writer's clock may lag) to
    ``ahead_days`` ahead, never below the legacy cutover; and the units entirely older than
    ``history_days``."""
    today = now.astimezone(UTC).date()
    cutoff = day_start(today) - timedelta(days=policy.history_days)
    units = units_of(partitions, cutover)
    present = {(t, u.day) for u in units if u.day is not None for t in u.tables}
    create = tuple(
        (table, prefix, day)
        for offset in range(-1, policy.ahead_days + 1)
        for day in [today + timedelta(days=offset)]
        for table, prefix in HISTORY_TABLES
        if (table, day) not in present and (cutover is None or day_start(day) >= cutover))
    expired = tuple(u for u in units if u.upper <= cutoff)
    return Plan(create, expired, cutoff)


def account_cutoffs(policy: RetentionPolicy, now: datetime) -> list[tuple[str, datetime]]:
    """(account id, cutoff) for each shorter per-account retention: that account's history
    created before the cutoff (a UTC midnight, like the days dropped) is past retention."""
    today = day_start(now.astimezone(UTC).date())
    return [(account, today - timedelta(days=days)) for account, days in policy.account_days]


def dead_letter_cutoff(policy: RetentionPolicy, now: datetime) -> datetime | None:
    """Dead letters that died before this are past their retention (None: kept forever)."""
    if policy.dead_letter_days is None:
        return None
    return now - timedelta(days=policy.dead_letter_days)


def audit_cutoff(policy: RetentionPolicy, now: datetime) -> datetime | None:
    """Audit rows written before this are past their retention (None: kept forever)."""
    if policy.audit_days is None:
        return None
    return now - timedelta(days=policy.audit_days)


def past_retention_message(noun: str, object_id: str, created_at: datetime,
                           horizon: datetime) -> str:
    """The 404 message for something purged: says it is past retention, and since when."""
    return (f"{noun} {object_id} is past retention: it was created on "
            f"{created_at.astimezone(UTC):%Y-%m-%d}, and history created before "
            f"{horizon.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ} has been purged")


# An event's deliveries are made by the transaction that stores the event, their ids drawn
# right after the event's; this window is far wider than that, for clock steps and slow commits.
ID_SLACK_MS = 60_000
DELIVERY_WINDOW_MS = 3_600_000


def delivery_id_window(event_id: str) -> tuple[str, str] | None:
    """(lowest, highest-exclusive) delivery id an event's deliveries can have, so a lookup by
    event id prunes the deliveries partitions; None for an id that is not a ULID."""
    ms = id_unix_ms(event_id)
    if ms is None:
        return None
    return (lowest_id_at("dlv", ms - ID_SLACK_MS),
            lowest_id_at("dlv", ms + DELIVERY_WINDOW_MS))


def event_id_floor(at: datetime) -> str:
    """An event id at or below every event created at ``at`` or later (slack included), so a
    ``created_at >= at`` filter can add ``id >= event_id_floor(at)`` and prune partitions."""
    return lowest_id_at("evt", int(at.timestamp() * 1000) - ID_SLACK_MS)


def event_id_ceiling(at: datetime) -> str:
    """An event id above every event created before ``at`` (slack included): the partner of
    :func:`event_id_floor` for ``created_at < at``."""
    return lowest_id_at("evt", int(at.timestamp() * 1000) + ID_SLACK_MS)
