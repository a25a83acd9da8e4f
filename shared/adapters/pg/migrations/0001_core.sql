-- Postwire core schema: the system of record for endpoints, events, deliveries, attempts,
-- dead letters and the transactional outbox. Kafka only transports; everything here survives
-- a broker that restarts empty.

CREATE TABLE endpoints (
    id                         text PRIMARY KEY,              -- ep_<ulid>
    account_id                 text NOT NULL,
    url                        text NOT NULL,
    event_types                text[] NOT NULL,
    description                text,
    enabled                    boolean NOT NULL DEFAULT true,
    disabled_reason            text,
    rate_limit_per_s           integer,
    max_in_flight              integer NOT NULL DEFAULT 10,
    metadata                   jsonb NOT NULL DEFAULT '{}'::jsonb,
    secret                     text NOT NULL,                 -- whsec_...
    previous_secret            text,                          -- signed with too until it expires
    previous_secret_expires_at timestamptz,
    created_at                 timestamptz NOT NULL,
    updated_at                 timestamptz NOT NULL,
    deleted_at                 timestamptz                    -- soft delete
);
CREATE INDEX endpoints_account_idx ON endpoints (account_id, id) WHERE deleted_at IS NULL;

-- Shared per-endpoint health: the circuit breaker and the auto-disable clock. Written by
-- dispatchers, cached per process. One row per endpoint, created lazily.
CREATE TABLE endpoint_health (
    endpoint_id            text PRIMARY KEY REFERENCES endpoints (id),
    consecutive_failures   integer NOT NULL DEFAULT 0,
    failing_since          timestamptz,                       -- first failure of the current streak
    circuit_open_until     timestamptz,
    updated_at             timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE events (
    id              text PRIMARY KEY,                         -- evt_<ulid>, also the webhook-id
    account_id      text NOT NULL,
    type            text NOT NULL,
    ordering_key    text,
    body            bytea NOT NULL,                           -- exact webhook body bytes, never re-rendered
    created_at      timestamptz NOT NULL,
    delivery_count  integer NOT NULL
);
CREATE INDEX events_account_idx ON events (account_id, id DESC);
CREATE INDEX events_account_type_idx ON events (account_id, type, id DESC);

-- Per (endpoint, ordering key) sequence allocator: the row lock serialises appends to one key.
CREATE TABLE ordering_keys (
    endpoint_id   text NOT NULL,
    ordering_key  text NOT NULL,
    last_sequence bigint NOT NULL,
    PRIMARY KEY (endpoint_id, ordering_key)
);

CREATE TABLE deliveries (
    id                  text PRIMARY KEY,                     -- dlv_<ulid>
    event_id            text NOT NULL REFERENCES events (id),
    endpoint_id         text NOT NULL REFERENCES endpoints (id),
    account_id          text NOT NULL,
    ordering_key        text,
    sequence            bigint,                               -- per (endpoint, ordering_key); null without key
    status              text NOT NULL CHECK (status IN ('pending', 'retrying', 'succeeded', 'dead', 'cancelled')),
    attempt_count       integer NOT NULL DEFAULT 0,           -- every attempt ever made
    round_attempt_count integer NOT NULL DEFAULT 0,           -- attempts since the last (re)queue; drives the schedule
    generation          integer NOT NULL DEFAULT 0,           -- bumped by every replay; stale messages are skipped
    next_attempt_at     timestamptz,                          -- when a parked delivery is due again
    last_attempt_at     timestamptz,
    last_status_code    integer,
    last_error          text,
    lease_owner         text,                                 -- dispatcher holding it in flight
    lease_until         timestamptz,
    created_at          timestamptz NOT NULL,
    updated_at          timestamptz NOT NULL
);
CREATE INDEX deliveries_event_idx ON deliveries (event_id);
CREATE INDEX deliveries_due_idx ON deliveries (next_attempt_at) WHERE status IN ('pending', 'retrying');
CREATE INDEX deliveries_ordering_idx ON deliveries (endpoint_id, ordering_key, sequence)
    WHERE ordering_key IS NOT NULL AND status IN ('pending', 'retrying');
CREATE INDEX deliveries_endpoint_open_idx ON deliveries (endpoint_id) WHERE status IN ('pending', 'retrying');

CREATE TABLE attempts (
    id                text PRIMARY KEY,                       -- att_<ulid>
    delivery_id       text NOT NULL REFERENCES deliveries (id),
    attempt           integer NOT NULL,
    started_at        timestamptz NOT NULL,
    duration_ms       integer NOT NULL,
    status_code       integer,
    error             text,                                   -- timeout, connection, dns, tls, ssrf_blocked, too_large, ...
    response_excerpt  text,                                   -- at most 1 KiB
    UNIQUE (delivery_id, attempt)
);

CREATE TABLE dead_letters (
    delivery_id      text PRIMARY KEY REFERENCES deliveries (id),
    seq              bigserial UNIQUE,                         -- list order; bumped when a replayed delivery dies again
    event_id         text NOT NULL,
    endpoint_id      text NOT NULL,
    account_id       text NOT NULL,
    type             text NOT NULL,
    reason           text NOT NULL,                           -- retries_exhausted, non_retryable_status, gone, endpoint_disabled
    attempt_count    integer NOT NULL,
    last_status_code integer,
    last_error       text,
    dead_at          timestamptz NOT NULL,
    replay_count     integer NOT NULL DEFAULT 0
);
CREATE INDEX dead_letters_endpoint_idx ON dead_letters (endpoint_id, seq DESC);
CREATE INDEX dead_letters_account_idx ON dead_letters (account_id, seq DESC);

-- Per-account Idempotency-Key records for POST /v1/events (24 h window).
CREATE TABLE idempotency_keys (
    account_id    text NOT NULL,
    key           text NOT NULL,
    request_hash  bytea NOT NULL,
    event_id      text NOT NULL,
    response      bytea NOT NULL,                             -- the 202 body, replayed byte for byte
    created_at    timestamptz NOT NULL,
    PRIMARY KEY (account_id, key)
);
CREATE INDEX idempotency_keys_created_idx ON idempotency_keys (created_at);

-- Transactional outbox: every Kafka message is first a row here, written in the same
-- transaction as the state change it announces. Deleted once the broker acknowledged it.
CREATE TABLE outbox (
    id          bigserial PRIMARY KEY,
    topic       text NOT NULL,                                -- logical name: 'deliveries' or 'deadletter'
    key         bytea NOT NULL,
    value       bytea NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
