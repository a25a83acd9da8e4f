"""Every metric the ingest service exports, each with its meaning."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from shared.http.metrics import HttpMetrics


class IngestMetrics:
    """One instance per process, registered on its own registry (tests run several apps)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.http = HttpMetrics(self.registry)
        self.events_accepted = Counter(
            "postwire_events_accepted_total", "Events durably committed and answered 202",
            registry=self.registry)
        self.deliveries_created = Counter(
            "postwire_deliveries_created_total", "Delivery rows created by fan-out",
            registry=self.registry)
        self.idempotent_replays = Counter(
            "postwire_idempotent_replays_total",
            "Requests answered from a stored Idempotency-Key response", registry=self.registry)
        self.outbox_backlog = Gauge(
            "postwire_outbox_backlog", "Outbox messages waiting to be published to Kafka",
            registry=self.registry)
        self.batch_size = Histogram(
            "postwire_group_commit_batch_size", "Events committed per group-commit transaction",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024), registry=self.registry)
        self.commit_seconds = Histogram(
            "postwire_group_commit_seconds", "Duration of one group-commit transaction",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
            registry=self.registry)
        self.endpoint_cache_hits = Counter(
            "postwire_endpoint_cache_hits_total", "Fan-out endpoint lookups served from cache",
            registry=self.registry)
        self.endpoint_cache_misses = Counter(
            "postwire_endpoint_cache_misses_total", "Fan-out endpoint lookups that read Postgres",
            registry=self.registry)
