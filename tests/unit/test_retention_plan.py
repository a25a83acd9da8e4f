"""The pure retention plan: which partitions to create, which days are past retention, the id
windows that let lookups prune partitions, and the retention settings."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from shared.core.errors import ConfigError
from shared.core.ids import id_unix_ms, lowest_id_at, new_id
from shared.core.retention import (
    RetentionPolicy,
    account_cutoffs,
    audit_cutoff,
    dead_letter_cutoff,
    delivery_id_window,
    event_id_ceiling,
    event_id_floor,
    parse_partition_day,
    partition_name,
    past_retention_message,
    plan,
    units_of,
)
from shared.retention.settings import load_retention_policy

POLICY = RetentionPolicy(history_days=30, dead_letter_days=90, audit_days=None, ahead_days=2)
NOW = datetime(2026, 12, 4, 18, 0, tzinfo=UTC)


def _all(days: list[date]) -> list[str]:
    return [partition_name(t, d) for d in days for t in ("events", "deliveries", "attempts")]


def test_partition_names_round_trip() -> None:
    assert partition_name("events", date(2026, 12, 4)) == "events_p20261204"
    assert parse_partition_day("attempts_p20261204") == ("attempts", date(2026, 12, 4))
    assert parse_partition_day("events_legacy") is None
    assert parse_partition_day("events_p20261340") is None


def test_plan_creates_missing_days_from_yesterday_to_ahead() -> None:
    existing = [*_all([date(2026, 12, 4)]), "deliveries_p20261205"]
    steps = plan(POLICY, NOW, existing, None)
    assert steps.create == (
        ("events", "evt", date(2026, 12, 3)), ("deliveries", "dlv", date(2026, 12, 3)),
        ("attempts", "dlv", date(2026, 12, 3)),
        ("events", "evt", date(2026, 12, 5)), ("attempts", "dlv", date(2026, 12, 5)),
        ("events", "evt", date(2026, 12, 6)), ("deliveries", "dlv", date(2026, 12, 6)),
        ("attempts", "dlv", date(2026, 12, 6)))
    assert steps.expired == ()


def test_plan_never_creates_below_the_legacy_cutover() -> None:
    cutover = datetime(2026, 12, 5, tzinfo=UTC)
    steps = plan(POLICY, NOW, ["events_legacy", "deliveries_legacy", "attempts_legacy"], cutover)
    assert {day for _, _, day in steps.create} == {date(2026, 12, 5), date(2026, 12, 6)}


def test_plan_expires_only_whole_days_older_than_retention() -> None:
    cutoff_day = date(2026, 11, 4)  # 2026-12-04 minus 30 days
    days = [cutoff_day - timedelta(days=2), cutoff_day - timedelta(days=1), cutoff_day]
    steps = plan(POLICY, NOW, _all(days), None)
    assert steps.history_cutoff == datetime(2026, 11, 4, tzinfo=UTC)
    assert [u.day for u in steps.expired] == days[:2]
    assert steps.expired[0].tables == ("attempts", "deliveries", "events")
    assert steps.expired[0].partition_of("events") == "events_p20261102"


def test_legacy_unit_expires_when_its_cutover_is_past_retention() -> None:
    names = ["events_legacy", "deliveries_legacy", "attempts_legacy"]
    young = plan(POLICY, NOW, names, datetime(2026, 11, 10, tzinfo=UTC))
    assert young.expired == ()
    old = plan(POLICY, NOW, names, datetime(2026, 11, 1, tzinfo=UTC))
    assert [u.label for u in old.expired] == ["legacy"]
    assert old.expired[0].partition_of("attempts") == "attempts_legacy"
    assert old.expired[0].lower is None


def test_units_group_partitions_by_day_oldest_first() -> None:
    units = units_of(["events_p20261202", "deliveries_p20261201", "events_p20261201",
                      "other_p20261201", "outbox"], None)
    assert [(u.label, u.tables) for u in units] == [
        ("2026-12-01", ("deliveries", "events")), ("2026-12-02", ("events",))]


def test_dead_letter_and_audit_cutoffs() -> None:
    assert dead_letter_cutoff(POLICY, NOW) == NOW - timedelta(days=90)
    assert audit_cutoff(POLICY, NOW) is None
    assert audit_cutoff(RetentionPolicy(30, None, 365, 7), NOW) == NOW - timedelta(days=365)
    assert dead_letter_cutoff(RetentionPolicy(30, None, 365, 7), NOW) is None


def test_delivery_window_contains_deliveries_made_with_the_event() -> None:
    event_id = new_id("evt")
    delivery_id = new_id("dlv")
    window = delivery_id_window(event_id)
    assert window is not None
    assert window[0] <= delivery_id < window[1]
    ms = id_unix_ms(event_id)
    assert ms is not None
    assert window[1] == lowest_id_at("dlv", ms + 3_600_000)
    assert delivery_id_window("evt_not-a-ulid") is None


def test_event_id_bounds_bracket_the_created_at_filter() -> None:
    at = datetime(2026, 12, 4, 12, tzinfo=UTC)
    ms = int(at.timestamp() * 1000)
    made_at = lowest_id_at("evt", ms)
    assert event_id_floor(at) <= made_at < event_id_ceiling(at + timedelta(milliseconds=1))
    assert id_unix_ms(event_id_floor(at)) == ms - 60_000


def test_id_unix_ms_reads_the_ulid_time() -> None:
    assert id_unix_ms(lowest_id_at("att", 1_733_270_400_123)) == 1_733_270_400_123
    assert id_unix_ms("evt_short") is None
    assert id_unix_ms("nounderscore") is None


def test_past_retention_message_names_the_dates() -> None:
    text = past_retention_message("event", "evt_X", datetime(2026, 10, 1, 5, tzinfo=UTC),
                                  datetime(2026, 11, 4, tzinfo=UTC))
    assert text == ("event evt_X is past retention: it was created on 2026-10-01, and history "
                    "created before 2026-11-04T00:00:00Z has been purged")


def test_settings_defaults_and_forever() -> None:
    assert load_retention_policy({}) == RetentionPolicy(30, 90, None, 7)
    policy = load_retention_policy({"POSTWIRE_RETENTION_DAYS": "7",
                                    "POSTWIRE_DEAD_LETTER_RETENTION_DAYS": "forever",
                                    "POSTWIRE_AUDIT_RETENTION_DAYS": "400",
                                    "POSTWIRE_PARTITION_AHEAD_DAYS": "3"})
    assert policy == RetentionPolicy(7, None, 400, 3)


@pytest.mark.parametrize(("name", "value"), [
    ("POSTWIRE_RETENTION_DAYS", "0"), ("POSTWIRE_RETENTION_DAYS", "forever"),
    ("POSTWIRE_DEAD_LETTER_RETENTION_DAYS", "-1"), ("POSTWIRE_AUDIT_RETENTION_DAYS", "soon"),
    ("POSTWIRE_PARTITION_AHEAD_DAYS", "0")])
def test_bad_settings_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        load_retention_policy({name: value})


def test_per_account_retention_is_shorter_only() -> None:
    policy = load_retention_policy({"POSTWIRE_RETENTION_ACCOUNT_DAYS": "acct_b:14, acct_a:7"})
    assert policy.account_days == (("acct_a", 7), ("acct_b", 14))
    assert account_cutoffs(policy, NOW) == [
        ("acct_a", datetime(2026, 11, 27, tzinfo=UTC)),
        ("acct_b", datetime(2026, 11, 20, tzinfo=UTC))]
    for bad in ("acct_a:30", "acct_a:0", "acct_a", "acct a:3", "acct_a:3,acct_a:4", "x:y"):
        with pytest.raises(ConfigError, match="POSTWIRE_RETENTION_ACCOUNT_DAYS"):
            load_retention_policy({"POSTWIRE_RETENTION_ACCOUNT_DAYS": bad})


def test_id_unix_ms_refuses_times_beyond_48_bits() -> None:
    assert id_unix_ms("evt_8ZZZZZZZZZ0000000000000000") is None
    assert id_unix_ms("evt_7ZZZZZZZZZ0000000000000000") == 2**48 - 1
