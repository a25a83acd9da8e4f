"""The ingest API's OpenAPI 3.1 document, from the models that validate its requests.

``python -m services.ingest.openapi`` prints it (``make openapi`` writes
docs/openapi/ingest.json); the running service serves it at ``GET /openapi.json``.
"""

from __future__ import annotations

import sys
from typing import Any

from services.ingest.api_models import (
    MAX_BATCH_EVENTS,
    AttemptList,
    BatchAccepted,
    BatchItem,
    EventAccepted,
    EventBatch,
    EventCreate,
    EventList,
    EventWithDeliveries,
    FeedPage,
    FeedToken,
    IdType,
    ReconcileLine,
    ReconcileUpload,
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
from shared.models.common import AccountId, DeliveryId, EndpointId, EventId, EventType
from shared.models.endpoints import Endpoint as EndpointModel
from shared.models.endpoints import (
    EndpointCreate,
    EndpointList,
    EndpointPatch,
    EndpointWithSecret,
    RotateSecret,
    SecretAnswer,
)
from shared.models.params import PAGING, idempotency_header, since_until

INFO = ApiInfo(
    title="Postwire ingest API",
    version=POSTWIRE_VERSION,
    description=(
        "The public API of Postwire: merchant webhook endpoints, events (single and batch), "
        "their deliveries and attempts, the merchant catch-up feed and producer "
        "reconciliation. Errors are always {\"error\": {\"type\", \"message\", \"param\"}}. "
        "Prose reference: docs/api.md."),
    security_description="An ingest API key (POSTWIRE_API_KEYS); the feed takes a feed token.",
    tags=(("endpoints", "Merchant webhook destinations"),
          ("events", "Events, deliveries and attempts"),
          ("feed", "The merchant catch-up feed"),
          ("reconcile", "Producer reconciliation"),
          ("service", "Health, readiness, metrics and this document")),
)

ENDPOINT_ID = Param("endpoint_id", "path", EndpointId, "The endpoint's id.")
EVENT_ID = Param("event_id", "path", EventId, "The event's id.")
DELIVERY_ID = Param("delivery_id", "path", DeliveryId, "The delivery's id.")
ACCOUNT_QUERY = Param("account_id", "query", AccountId, "Only this account's objects.")
SCOPED = (403,)  # a key limited to other accounts

OPERATIONS: tuple[Operation, ...] = (
    Operation("post", "/v1/endpoints", "create_endpoint", "Create an endpoint", "endpoints",
              (Answer(201, "Created; the only answer that carries the secret besides /secret",
                      EndpointWithSecret),), body=EndpointCreate, errors=SCOPED),
    Operation("get", "/v1/endpoints", "list_endpoints", "List endpoints, newest first",
              "endpoints", (Answer(200, "A page of endpoints", EndpointList),),
              params=(ACCOUNT_QUERY, *PAGING), errors=SCOPED),
    Operation("get", "/v1/endpoints/{endpoint_id}", "get_endpoint", "Get an endpoint",
              "endpoints", (Answer(200, "The endpoint", EndpointModel),), params=(ENDPOINT_ID,),
              errors=(404,)),
    Operation("patch", "/v1/endpoints/{endpoint_id}", "update_endpoint",
              "Change an endpoint's fields (only those given)", "endpoints",
              (Answer(200, "The endpoint as changed", EndpointModel),), params=(ENDPOINT_ID,),
              body=EndpointPatch, errors=(404,)),
    Operation("delete", "/v1/endpoints/{endpoint_id}", "delete_endpoint",
              "Delete an endpoint; its open deliveries are cancelled", "endpoints",
              (Answer(204, "Deleted"),), params=(ENDPOINT_ID,), errors=(404,)),
    Operation("get", "/v1/endpoints/{endpoint_id}/secret", "get_endpoint_secret",
              "Reveal the endpoint's signing secret", "endpoints",
              (Answer(200, "The current secret", SecretAnswer),), params=(ENDPOINT_ID,),
              errors=(404,)),
    Operation("post", "/v1/endpoints/{endpoint_id}/rotate-secret", "rotate_endpoint_secret",
              "Rotate the secret; the previous one keeps signing for grace_period_s",
              "endpoints", (Answer(200, "The new secret", SecretAnswer),),
              params=(ENDPOINT_ID,), body=RotateSecret, body_required=False, errors=(404,)),
    Operation("get", "/v1/endpoints/{endpoint_id}/feed-token", "get_feed_token",
              "The endpoint's feed token, for GET /v1/feed/{endpoint_id}", "feed",
              (Answer(200, "The token", FeedToken),), params=(ENDPOINT_ID,), errors=(404,)),
    Operation("post", "/v1/events", "create_event", "Send an event", "events",
              (Answer(202, "Accepted (persisted; deliveries created)", EventAccepted,
                      headers=("Idempotent-Replayed",)),),
              params=(idempotency_header("Makes retries safe: the same key with the same "
                                         "event answers the first result."),),
              body=EventCreate, errors=(403, 409)),
    Operation("post", "/v1/events/batch", "create_events",
              f"Send 1..{MAX_BATCH_EVENTS} events; each is accepted or refused on its own",
              "events", (Answer(202, "One result per item, in request order",
                                BatchAccepted),), body=EventBatch),
    Operation("get", "/v1/events", "list_events", "List events, newest first", "events",
              (Answer(200, "A page of events", EventList),),
              params=(ACCOUNT_QUERY, Param("type", "query", EventType, "Only this type."),
                      *since_until("created_at"), *PAGING), errors=SCOPED),
    Operation("get", "/v1/events/{event_id}", "get_event", "An event and its deliveries",
              "events", (Answer(200, "The event", EventWithDeliveries),), params=(EVENT_ID,),
              errors=(404,)),
    Operation("get", "/v1/deliveries/{delivery_id}/attempts", "list_attempts",
              "A delivery's attempts, by attempt number", "events",
              (Answer(200, "A page of attempts", AttemptList),),
              params=(DELIVERY_ID, *PAGING), errors=(404,)),
    Operation("get", "/v1/feed/{endpoint_id}", "read_feed",
              "Every event routed to the endpoint, in acceptance order (feed token)", "feed",
              (Answer(200, "A feed page", FeedPage),),
              params=(ENDPOINT_ID, *PAGING, since_until("created_at")[0])),
    Operation("post", "/v1/reconcile", "reconcile",
              "Compare the ids you sent with what was accepted and delivered", "reconcile",
              (Answer(200, "Streamed answer lines", ReconcileLine,
                      content_type="application/x-ndjson"),),
              params=(Param("account_id", "query", AccountId, "The account reconciled.",
                            required=True),
                      Param("id_type", "query", IdType, "What the ids are (default "
                            "idempotency_key)."),
                      Param("from", "query", since_until("created_at")[0].schema,
                            "Only events created at or after this."),
                      Param("to", "query", since_until("created_at")[1].schema,
                            "Only events created before this.")),
              body=ReconcileUpload, body_types=("application/x-ndjson", "text/csv"),
              errors=SCOPED),
    *service_operations("service"),
)


def document() -> dict[str, Any]:
    """The ingest API's OpenAPI 3.1 document."""
    return build_document(INFO, OPERATIONS, extra_models=(BatchItem,))


if __name__ == "__main__":
    sys.stdout.buffer.write(encode_document(document()))
