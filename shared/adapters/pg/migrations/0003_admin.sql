-- Admin and replay service: replay jobs (single-event and bulk), the bulk job's snapshot of
-- matched deliveries, the operator audit log and Idempotency-Key records of replay requests.

-- One row per replay: kind 'event' (POST /admin/v1/events/{id}/replay, finished when answered)
-- or 'bulk' (POST /admin/v1/replays, worked through by a leased worker).
CREATE TABLE replay_jobs (
    id              text PRIMARY KEY,                         -- rpl_<ulid>
    kind            text NOT NULL CHECK (kind IN ('event', 'bulk')),
    status          text NOT NULL CHECK (status IN ('running', 'completed', 'cancelled', 'failed')),
    reason          text NOT NULL,
    created_by      text NOT NULL,                            -- operator name
    filter          jsonb NOT NULL DEFAULT '{}'::jsonb,       -- bulk filter, or {"event_id": ...}
    max_per_second  integer,                                  -- bulk only
    matched         integer NOT NULL DEFAULT 0,               -- items in the snapshot
    queued          integer NOT NULL DEFAULT 0,
    skipped         integer NOT NULL DEFAULT 0,
    position        integer NOT NULL DEFAULT 0,               -- last item handled (bulk cursor)
    lease_owner     text,                                     -- worker currently walking it
    lease_until     timestamptz,
    last_error      text,                                     -- why a step failed (failed jobs)
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz
);
CREATE INDEX replay_jobs_running_idx ON replay_jobs (created_at) WHERE status = 'running';

-- The deliveries a bulk job matched at creation, in the order it walks them (acceptance order).
-- Written once in the job's creating transaction; never changed afterwards.
CREATE TABLE replay_job_items (
    job_id       text NOT NULL REFERENCES replay_jobs (id) ON DELETE CASCADE,
    position     integer NOT NULL,                            -- 1..matched
    delivery_id  text NOT NULL,
    PRIMARY KEY (job_id, position)
);

-- Every mutating admin call, written in the same transaction as the change it describes.
CREATE TABLE audit_log (
    id        bigserial PRIMARY KEY,                          -- list order (newest first)
    at        timestamptz NOT NULL DEFAULT now(),
    operator  text NOT NULL,
    action    text NOT NULL,                                  -- replay.event, replay.bulk.start, replay.bulk.cancel
    target    text NOT NULL,                                  -- evt_... or rpl_...
    reason    text,
    details   jsonb NOT NULL DEFAULT '{}'::jsonb
);

-- Idempotency-Key records of POST /admin/v1/events/{id}/replay, per operator, 24 h window.
-- A retried identical request gets the stored response; nothing else is ever deduplicated.
CREATE TABLE admin_idempotency_keys (
    operator      text NOT NULL,
    key           text NOT NULL,
    request_hash  bytea NOT NULL,
    replay_id     text,
    response      jsonb,                                      -- null only inside the owning transaction
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (operator, key)
);
CREATE INDEX admin_idempotency_keys_created_idx ON admin_idempotency_keys (created_at);

-- Dead-letter list filters (type) and bulk matching (dead deliveries only).
CREATE INDEX dead_letters_type_idx ON dead_letters (type, seq DESC);
CREATE INDEX dead_letters_dead_at_idx ON dead_letters (dead_at);
CREATE INDEX deliveries_dead_idx ON deliveries (id) WHERE status = 'dead';
