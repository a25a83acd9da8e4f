"""Every metric the admin service exports, each with its meaning."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

from shared.http.metrics import HttpMetrics


class AdminMetrics:
    """One instance per process, registered on its own registry (tests run several apps)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.http = HttpMetrics(self.registry)
        self.replay_outcomes = Counter(
            "postwire_replay_outcomes_total",
            "Deliveries handled by a replay, by replay kind (event, bulk) and outcome",
            ["kind", "outcome"], registry=self.registry)
        self.replay_requests = Counter(
            "postwire_replay_requests_total",
            "Replay requests, by kind (event, bulk, cancel) and result (ok, idempotent_replayed)",
            ["kind", "result"], registry=self.registry)
        self.bulk_steps = Counter(
            "postwire_bulk_replay_steps_total",
            "Committed steps of bulk replay workers in this process", registry=self.registry)
        self.bulk_step_failures = Counter(
            "postwire_bulk_replay_step_failures_total",
            "Bulk replay steps that failed and will be retried", registry=self.registry)
        self.bulk_jobs = Gauge(
            "postwire_bulk_replay_jobs", "Bulk replay jobs by status (all processes)",
            ["status"], registry=self.registry)
        self.bulk_remaining = Gauge(
            "postwire_bulk_replay_remaining",
            "Matched deliveries that running bulk replays have not reached yet",
            registry=self.registry)
        self.bulk_jobs_owned = Gauge(
            "postwire_bulk_replay_jobs_owned", "Bulk replay jobs this process is walking now",
            registry=self.registry)
        self.dead_letters = Gauge(
            "postwire_dead_letters", "Dead-lettered deliveries still dead (not replayed since)",
            registry=self.registry)
        self.outbox_backlog = Gauge(
            "postwire_outbox_backlog", "Outbox messages waiting to be published to Kafka",
            registry=self.registry)
        # the ledger of the rolling window (services/dlq_replay/ledger.py), all processes
        self.ledger_window = Gauge(
            "postwire_ledger_window_seconds",
            "Length of the rolling acceptance window the ledger gauges describe",
            registry=self.registry)
        self.ledger_events_accepted = Gauge(
            "postwire_ledger_events_accepted", "Events accepted in the ledger window",
            registry=self.registry)
        self.ledger_deliveries_created = Gauge(
            "postwire_ledger_deliveries_created",
            "Deliveries the window's events were accepted with (sum of delivery_count)",
            registry=self.registry)
        self.ledger_deliveries = Gauge(
            "postwire_ledger_deliveries",
            "Deliveries of the window's events by status (pending, retrying, succeeded, dead,"
            " cancelled)", ["status"], registry=self.registry)
        self.ledger_unbalanced = Gauge(
            "postwire_ledger_unbalanced_deliveries",
            "Deliveries the window's ledger cannot account for (created minus succeeded, dead,"
            " cancelled and open, plus dead ones without a dead letter); must be 0",
            registry=self.registry)
        self.ledger_oldest_open_age = Gauge(
            "postwire_ledger_oldest_open_delivery_age_seconds",
            "Age of the oldest pending or retrying delivery (all time; 0 when none is open)",
            registry=self.registry)
        self.ledger_refreshed = Gauge(
            "postwire_ledger_refreshed_timestamp_seconds",
            "Unix time of the last successful ledger refresh", registry=self.registry)
