-- Reconciliation: what producers, merchants and operators need to prove that nothing was lost.

-- The Idempotency-Key an event was accepted with, kept with the event for as long as the event
-- exists (the idempotency_keys table forgets keys after 24 h). Stored without surrounding
-- spaces, the form producer reconciliation compares (docs/operations.md, "Reconcile").
ALTER TABLE events ADD COLUMN idempotency_key text;
CREATE INDEX events_idempotency_key_idx ON events (account_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;

-- The transaction that created a delivery. The merchant catch-up feed walks an endpoint's
-- deliveries by (feed_txid, id) and serves only rows whose transaction is older than every
-- transaction still running (pg_snapshot_xmin), so a row can never appear behind a cursor that
-- has already passed its position: each event is returned exactly once while events arrive.
ALTER TABLE deliveries ADD COLUMN feed_txid xid8 NOT NULL DEFAULT pg_current_xact_id();
CREATE INDEX deliveries_feed_idx ON deliveries (endpoint_id, feed_txid, id);
