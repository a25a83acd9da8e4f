-- Dispatcher state that 0001 does not hold: half-open circuit probes, the cross-process rate
-- slot of each endpoint, when a delivery's message was last (re)published, and the indexes the
-- claim, scheduler and sweeper statements use.

-- A half-open circuit lets one probe through; while it is in flight (until probe_until) every
-- other delivery of the endpoint is rescheduled. rate_next_free_at is the next free send slot
-- of an endpoint with rate_limit_per_s (GCRA-style spacing shared by every dispatcher).
ALTER TABLE endpoint_health
    ADD COLUMN probe_until       timestamptz,
    ADD COLUMN rate_next_free_at timestamptz;

-- When the scheduler, the sweeper or a finished ordering-key head last published a message for
-- this delivery. The scheduler announces a due delivery once: when next_attempt_at is later
-- than the last announcement (published_at, else created_at: ingest announces new deliveries
-- itself). The sweeper announces again only after a delivery has stood still for a while.
ALTER TABLE deliveries ADD COLUMN published_at timestamptz;

-- What the scheduler looks at: only deliveries still to be announced (a small set).
CREATE INDEX deliveries_unannounced_idx ON deliveries (next_attempt_at)
    WHERE status IN ('pending', 'retrying')
      AND next_attempt_at > coalesce(published_at, created_at);

-- In-flight per endpoint = unexpired leases; leases are cleared when an outcome is recorded, so
-- this index stays small (bounded by what is in flight plus leases of crashed dispatchers).
CREATE INDEX deliveries_leased_idx ON deliveries (endpoint_id, lease_until)
    WHERE lease_until IS NOT NULL;
