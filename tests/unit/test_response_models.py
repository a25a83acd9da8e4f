"""What the handlers' render functions answer fits the response models of the OpenAPI
documents (fast feedback beside the schemathesis run, which checks the live answers)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec
import orjson

from services.dlq_replay.api_models import (
    AdminAttempt,
    AdminDelivery,
    AuditEntry,
    DeadLetter,
    Ledger,
    ReplayJob,
)
from services.dlq_replay.audit import audit_json
from services.dlq_replay.jobs import job_json
from services.dlq_replay.reads import attempt_json, dead_letter_json, delivery_json
from services.ingest.api_models import Attempt, Delivery, Event, FeedItem
from services.ingest.events_api import render_attempt, render_delivery, render_event
from services.ingest.feed_api import render_item
from shared.core.event_body import embed_json_text
from shared.core.ids import new_id
from shared.core.ledger import Ledger as LedgerFigures
from shared.endpoints.operations import render_endpoint
from shared.models.endpoints import Endpoint

NOW = datetime(2026, 12, 4, 19, 0, tzinfo=UTC)
EVENT_ID, DELIVERY_ID, ENDPOINT_ID = new_id("evt"), new_id("dlv"), new_id("ep")
BODY = (b'{"id":"' + EVENT_ID.encode() + b'","type":"invoice.paid","timestamp":'
        b'"2026-12-04T19:00:00.000Z","account_id":"acct_1","data":{"amount": 1E5, "n": '
        b'123456789012345678901234567890}}')


def fits(value: Any, model: Any) -> None:
    """``value``, encoded as the handlers encode it, decodes as ``model``."""
    raw = orjson.dumps(value, default=embed_json_text)
    msgspec.json.decode(raw, type=model)


def test_endpoint() -> None:
    row = {"id": ENDPOINT_ID, "account_id": "acct_1", "url": "https://x.test/h",
           "event_types": ["*"], "description": None, "enabled": False,
           "disabled_reason": "manual", "rate_limit_per_s": None, "max_in_flight": 10,
           "metadata": {"team": "billing"}, "created_at": NOW, "updated_at": NOW}
    fits(render_endpoint(row), Endpoint)


def test_events_deliveries_attempts() -> None:
    event = {"id": EVENT_ID, "account_id": "acct_1", "type": "invoice.paid",
             "ordering_key": None, "created_at": NOW, "delivery_count": 1, "body": BODY}
    fits(render_event(event), Event)
    delivery = {"id": DELIVERY_ID, "endpoint_id": ENDPOINT_ID, "status": "dead",
                "attempt_count": 1, "last_attempt_at": NOW, "next_attempt_at": None,
                "last_status_code": None}
    fits(render_delivery(delivery), Delivery)
    attempt = {"id": new_id("att"), "attempt": 1, "started_at": NOW, "duration_ms": 3,
               "status_code": None, "error": "connection refused", "response_excerpt": None}
    fits(render_attempt(attempt), Attempt)
    fits(attempt_json(attempt), AdminAttempt)
    admin_delivery = {**delivery, "generation": 0, "last_error": "connection refused",
                      "dead_at": NOW, "dead_reason": "retries_exhausted", "replay_count": 0}
    fits(delivery_json(admin_delivery, [attempt_json(attempt)]), AdminDelivery)
    feed_row = {"event_id": EVENT_ID, "type": "invoice.paid", "created_at": NOW,
                "delivery_id": DELIVERY_ID, "status": "dead", "attempt_count": 1,
                "last_attempt_at": NOW, "next_attempt_at": None, "last_status_code": None,
                "body": BODY}
    msgspec.json.decode(render_item(feed_row), type=FeedItem)


def test_admin_views() -> None:
    fits(dead_letter_json({
        "delivery_id": DELIVERY_ID, "event_id": EVENT_ID, "endpoint_id": ENDPOINT_ID,
        "account_id": "acct_1", "type": "invoice.paid", "reason": "retries_exhausted",
        "attempt_count": 5, "last_status_code": 501, "last_error": "http 501",
        "dead_at": NOW, "replay_count": 0, "delivery_status": "dead"}), DeadLetter)
    fits(job_json({
        "id": new_id("rpl"), "status": "running", "matched": 3, "queued": 1, "skipped": 0,
        "created_by": "admin", "reason": "outage", "kind": "bulk",
        "filter": {"account_id": "acct_1"}, "max_per_second": 100, "last_error": None,
        "created_at": NOW, "updated_at": NOW, "finished_at": None}), ReplayJob)
    fits(audit_json({"id": 7, "at": NOW, "operator": "admin", "action": "replay.event",
                     "target": EVENT_ID, "reason": "fixed", "details": {"n": 1}}), AuditEntry)
    figures = LedgerFigures(since=NOW, until=NOW, as_of=NOW, events_accepted=2,
                            deliveries_created=2, by_status={"dead": 2},
                            dead_without_dead_letter=0)
    fits(figures.to_json(), Ledger)
