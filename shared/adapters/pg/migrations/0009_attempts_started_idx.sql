-- Console overview: the last hour of attempts (rate, success ratio, p50/p99 latency) is read by
-- started_at. Since 0008 attempts are partitioned by delivery_id and have no index on their
-- own id, so without this index that read would scan every partition. On the partitioned
-- parent this creates the index on every partition and on each new daily one as it is attached.
-- The build takes a SHARE lock on attempts: outcome writes wait until it finishes (seconds per
-- few million attempts), so migrate a large installation in a quiet moment.
CREATE INDEX attempts_started_idx ON attempts (started_at);
