"""The metrics of retention rounds, registered on the running service's registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

ROUND_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


class RetentionMetrics:
    """Counters and gauges of the rounds this process ran (only the lock holder runs one)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.rounds = Counter(
            "postwire_retention_rounds_total",
            "Retention rounds, by result (ok; deferred: a drop waited past the lock timeout;"
            " failed; skipped: another process holds the lock)",
            ["result"], registry=registry)
        self.round_seconds = Histogram(
            "postwire_retention_round_seconds", "Wall time of a retention round that ran",
            buckets=ROUND_BUCKETS, registry=registry)
        self.partitions_created = Counter(
            "postwire_retention_partitions_created_total",
            "History partitions created ahead of time", registry=registry)
        self.days_dropped = Counter(
            "postwire_retention_days_dropped_total",
            "Days of events, deliveries and attempts dropped past retention", registry=registry)
        self.drop_seconds = Counter(
            "postwire_retention_drop_seconds_total",
            "Time spent detaching and dropping expired partitions", registry=registry)
        self.days_blocked = Gauge(
            "postwire_retention_days_blocked",
            "Days past retention kept because deliveries in them are still open (last round)",
            registry=registry)
        self.rows_deleted = Counter(
            "postwire_retention_rows_deleted_total",
            "Rows deleted past their retention, by table (dead_letters, audit_log; events:"
            " of accounts with a shorter retention, with their deliveries and attempts)",
            ["table"], registry=registry)
        self.last_success = Gauge(
            "postwire_retention_last_success_timestamp_seconds",
            "Unix time of this process's last successful retention round", registry=registry)
