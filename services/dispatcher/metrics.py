"""Every metric the dispatcher exports, each with its meaning.

Label cardinality is bounded: no metric is labelled by delivery or event id, and the only
endpoint-labelled gauge (``postwire_endpoint_in_flight``) holds at most ``TOP_ENDPOINTS``
series, refreshed from the process's own gates.
"""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from shared.http.metrics import HttpMetrics

TOP_ENDPOINTS = 10
_DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
                    1800.0, 7200.0, 36000.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


def status_class(status_code: int | None) -> str:
    """``2xx`` .. ``5xx`` for a response, ``error`` when no response was received."""
    if status_code is None:
        return "error"
    return f"{status_code // 100}xx" if 100 <= status_code <= 599 else "other"


class DispatcherMetrics:
    """One instance per process, on its own registry (tests run several apps)."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self._broker_lag = 0
        self._postgres_lag = 0
        self.http = HttpMetrics(r)
        self.attempts = Counter(
            "postwire_attempts_total", "Webhook attempts made, by decision and status class",
            ["outcome", "status_class"], registry=r)
        self.attempt_errors = Counter(
            "postwire_attempt_errors_total", "Attempts that got no response, by error class",
            ["error"], registry=r)
        self.attempt_seconds = Histogram(
            "postwire_attempt_duration_seconds", "Duration of one webhook attempt",
            buckets=_DURATION_BUCKETS, registry=r)
        self.delivery_latency = Histogram(
            "postwire_delivery_latency_seconds", "From event acceptance to the 2xx of a delivery",
            buckets=_LATENCY_BUCKETS, registry=r)
        self.dead_letters = Counter(
            "postwire_dead_letters_total", "Deliveries dead-lettered, by reason", ["reason"],
            registry=r)
        self.rate_slots_missed = Counter(
            "postwire_rate_slot_missed_total",
            "Rate-limited attempts that would have left more than the tolerance after their"
            " reserved slot, so were not sent: the lease ended and the delivery was claimed"
            " again with a new slot", registry=r)
        self.claims = Counter(
            "postwire_claims_total", "Delivery messages handled by the claim step, by result",
            ["result"], registry=r)
        self.in_flight = Gauge(
            "postwire_in_flight", "Attempts in flight in this process (all endpoints)",
            registry=r)
        self.endpoint_in_flight = Gauge(
            "postwire_endpoint_in_flight",
            f"Attempts in flight in this process for the {TOP_ENDPOINTS} busiest endpoints",
            ["endpoint_id"], registry=r)
        self.endpoints_busy = Gauge(
            "postwire_endpoints_in_flight", "Endpoints with at least one attempt in flight here",
            registry=r)
        self.waiting = Gauge(
            "postwire_waiting_messages", "Consumed messages waiting in memory for a claim",
            registry=r)
        self.circuits = Gauge(
            "postwire_circuits", "Endpoints seen by this process, by circuit state", ["state"],
            registry=r)
        self.assigned_partitions = Gauge(
            "postwire_assigned_partitions", "Partitions of the deliveries topic this process owns",
            registry=r)
        self.consumer_lag = Gauge(
            "postwire_consumer_lag",
            "Work not yet picked up: messages behind the log end on this process's partitions"
            " (postwire_consumer_lag_broker) plus open deliveries Postgres says are due and"
            " unannounced (postwire_unannounced_deliveries, the same figure on every dispatcher)",
            registry=r)
        self.broker_lag = Gauge(
            "postwire_consumer_lag_broker",
            "Messages behind the log end on this process's partitions", registry=r)
        self.unannounced = Gauge(
            "postwire_unannounced_deliveries",
            "Open deliveries that are due but whose message is not (or may no longer be) on the"
            " broker: due and never re-published, or announced before a log loss and not yet"
            " re-announced", registry=r)
        self.log_resets = Counter(
            "postwire_log_resets_total",
            "Partitions found with a log that went backwards (rewound to their start), by reason",
            ["reason"], registry=r)
        self.wakeups = Counter(
            "postwire_wakeup_messages_total",
            "Delivery messages taken from the Postgres wake-up channel (low rates: Postgres is"
            " the only transport; the claim deletes their outbox rows)", registry=r)
        self.scheduler_backlog = Gauge(
            "postwire_scheduler_backlog", "Parked deliveries that are due but not yet re-published",
            registry=r)
        self.republished = Counter(
            "postwire_republished_total", "Delivery messages re-published from Postgres, by cause",
            ["cause"], registry=r)
        self.claim_batch = Histogram(
            "postwire_claim_batch_size", "Messages handled per claim transaction",
            buckets=_BATCH_BUCKETS, registry=r)
        self.claim_seconds = Histogram(
            "postwire_claim_seconds", "Duration of one claim transaction",
            buckets=_DURATION_BUCKETS, registry=r)
        self.outcome_batch = Histogram(
            "postwire_outcome_batch_size", "Outcomes recorded per group-commit transaction",
            buckets=_BATCH_BUCKETS, registry=r)
        self.outcome_commit_seconds = Histogram(
            "postwire_outcome_commit_seconds", "Duration of one outcome group-commit transaction",
            buckets=_DURATION_BUCKETS, registry=r)
        self.endpoints_disabled = Counter(
            "postwire_endpoints_disabled_total", "Endpoints disabled by the dispatcher, by cause",
            ["cause"], registry=r)
        self.outbox_backlog = Gauge(
            "postwire_outbox_backlog", "Outbox messages waiting to be published to Kafka",
            registry=r)
        self.consumer_restarts = Counter(
            "postwire_consumer_restarts_total", "Kafka consumer re-creations after broker trouble",
            registry=r)

    def set_broker_lag(self, messages: int) -> None:
        """This process's unread messages; ``postwire_consumer_lag`` is recomputed."""
        self._broker_lag = messages
        self.broker_lag.set(messages)
        self.consumer_lag.set(self._broker_lag + self._postgres_lag)

    def set_postgres_lag(self, deliveries: int) -> None:
        """Due, unannounced open deliveries; ``postwire_consumer_lag`` is recomputed."""
        self._postgres_lag = deliveries
        self.unannounced.set(deliveries)
        self.consumer_lag.set(self._broker_lag + self._postgres_lag)

    def set_endpoint_in_flight(self, counts: Mapping[str, int]) -> None:
        """Replace the per-endpoint gauge with the ``TOP_ENDPOINTS`` largest non-zero counts."""
        busy = sorted(((n, ep) for ep, n in counts.items() if n > 0), reverse=True)
        self.endpoint_in_flight.clear()
        for n, endpoint_id in busy[:TOP_ENDPOINTS]:
            self.endpoint_in_flight.labels(endpoint_id).set(n)
        self.endpoints_busy.set(len(busy))
        self.in_flight.set(sum(n for n, _ in busy))
