"""The admin API's OpenAPI 3.1 document, from the models that validate its requests.

``python -m services.dlq_replay.openapi`` prints it (``make openapi`` writes
docs/openapi/admin.json); the running service serves it at ``GET /openapi.json``. The
console and portal HTML pages are not part of the JSON API and are not listed.
"""

from __future__ import annotations

import sys
from typing import Annotated, Any

import msgspec

from services.dlq_replay.api_models import (
    AdminEvent,
    AuditLog,
    BulkReplay,
    CancelReplay,
    DeadLetterList,
    EventReplay,
    EventReplayResult,
    Ledger,
    PortalSession,
    PortalSessionCreate,
    ReplayJob,
    Storage,
    TimestampParam,
)
from shared.core.version import POSTWIRE_VERSION
from shared.http.openapi import (
    Answer,
    ApiInfo,
    Operation,
    Param,
    build_document,
    encode_document,
    service_operations,
)
from shared.models.common import AccountId, EndpointId, EventId, EventType, ReplayId
from shared.models.params import PAGING, idempotency_header

INFO = ApiInfo(
    title="Postwire admin API",
    version=POSTWIRE_VERSION,
    description=(
        "The operators' API: dead letters, events with every attempt, single-event and bulk "
        "replays, the audit log, the delivery ledger, storage and retention, and one-time "
        "merchant portal links. Every change is audited under the token's operator. Errors "
        "are always {\"error\": {\"type\", \"message\", \"param\"}}. Prose reference: "
        "docs/api.md."),
    security_description="An admin token (POSTWIRE_ADMIN_TOKENS, operator-name:token).",
    tags=(("dead-letters", "Deliveries that failed for good"),
          ("replays", "Sending deliveries again"),
          ("audit", "What operators did"),
          ("ledger", "Proving nothing was lost"),
          ("storage", "Sizes and retention"),
          ("portal", "Merchant portal links"),
          ("service", "Health, readiness, metrics and this document")),
)

Filter = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
EVENT_ID = Param("event_id", "path", EventId, "The event's id.")
REPLAY_ID = Param("id", "path", ReplayId, "The replay's id.")
REPLAY_KEY = idempotency_header("Makes the request safe to retry: the same key and body "
                                "answer the first result (Idempotent-Replayed: true).")
REPLAYED = ("Idempotent-Replayed",)

OPERATIONS: tuple[Operation, ...] = (
    Operation("get", "/admin/v1/dead-letters", "list_dead_letters",
              "Dead letters, newest first", "dead-letters",
              (Answer(200, "A page of dead letters", DeadLetterList),),
              params=(Param("endpoint_id", "query", EndpointId, "Only this endpoint's."),
                      Param("account_id", "query", AccountId, "Only this account's."),
                      Param("type", "query", EventType, "Only this event type."),
                      Param("event_id", "query", EventId, "Only this event's."),
                      Param("since", "query", TimestampParam, "Dead at or after this."),
                      Param("until", "query", TimestampParam, "Dead before this."),
                      *PAGING)),
    Operation("get", "/admin/v1/events/{event_id}", "get_event_with_attempts",
              "An event, its deliveries and every attempt", "dead-letters",
              (Answer(200, "The event", AdminEvent),), params=(EVENT_ID,), errors=(404,)),
    Operation("post", "/admin/v1/events/{event_id}/replay", "replay_event",
              "Send an event's deliveries again (audited)", "replays",
              (Answer(202, "Queued; one outcome per delivery", EventReplayResult,
                      headers=REPLAYED),),
              params=(EVENT_ID, REPLAY_KEY), body=EventReplay, errors=(404, 409)),
    Operation("post", "/admin/v1/replays", "start_bulk_replay",
              "Replay every dead letter a filter matches, at a bounded rate (audited)",
              "replays", (Answer(202, "Started", ReplayJob, headers=REPLAYED),),
              params=(REPLAY_KEY,), body=BulkReplay, errors=(409,)),
    Operation("get", "/admin/v1/replays/{id}", "get_replay", "A replay and its progress",
              "replays", (Answer(200, "The replay", ReplayJob),), params=(REPLAY_ID,),
              errors=(404,)),
    Operation("post", "/admin/v1/replays/{id}/cancel", "cancel_replay",
              "Stop a running bulk replay (audited)", "replays",
              (Answer(200, "The replay, cancelled", ReplayJob),), params=(REPLAY_ID,),
              body=CancelReplay, body_required=False, errors=(404, 409)),
    Operation("get", "/admin/v1/audit-log", "list_audit_log",
              "The audit log, newest first", "audit",
              (Answer(200, "A page of the audit log", AuditLog),),
              params=(Param("operator", "query", Filter, "Only this operator's actions."),
                      Param("action", "query", Filter, "Only this action, e.g. replay.event."),
                      Param("target", "query", Filter, "Only actions on this id."),
                      *PAGING)),
    Operation("get", "/admin/v1/ledger", "get_ledger",
              "Deliveries created = succeeded + dead + cancelled + open, over a window",
              "ledger", (Answer(200, "The ledger", Ledger),),
              params=(Param("from", "query", TimestampParam,
                            "Window start, inclusive (default: to minus 24 hours)."),
                      Param("to", "query", TimestampParam, "Window end, exclusive (default: "
                            "now)."))),
    Operation("get", "/admin/v1/storage", "get_storage",
              "Storage per table, the oldest retained day and the retention", "storage",
              (Answer(200, "The storage figures", Storage),)),
    Operation("post", "/admin/v1/portal-sessions", "create_portal_session",
              "A one-time merchant portal link for one account (audited)", "portal",
              (Answer(201, "The link", PortalSession),), body=PortalSessionCreate),
    *service_operations("service"),
)


def document() -> dict[str, Any]:
    """The admin API's OpenAPI 3.1 document."""
    return build_document(INFO, OPERATIONS)


if __name__ == "__main__":
    sys.stdout.buffer.write(encode_document(document()))
