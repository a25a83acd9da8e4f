-- Retention, step 1 of 3: prepare the online move of events, deliveries and attempts to
-- tables partitioned by day (docs/operations.md, "Retention and partitions").
--
-- Ids are ULIDs (48 bits of Unix milliseconds first), so "created on day D" is the id range
-- [postwire_id_floor(prefix, D), postwire_id_floor(prefix, D + 1 day)). The existing tables
-- become one legacy partition holding every id below the cutover; daily partitions start at
-- the cutover. Here the cutover is chosen and each table gets a CHECK constraint proving its
-- rows lie below it, NOT VALID so adding it scans nothing (a brief ACCESS EXCLUSIVE lock each).
-- Step 2 validates the constraints without blocking writes; step 3 swaps the tables, a
-- metadata-only change because the validated constraint lets ATTACH PARTITION skip its scan.

-- The smallest id of `prefix` created at or after `at` (ULID: milliseconds in the first 10
-- Crockford base32 characters, then 16 zero characters). Matches shared.core.ids.lowest_id_at.
CREATE FUNCTION postwire_id_floor(prefix text, at timestamptz) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT prefix || '_'
           || string_agg(substr('0123456789ABCDEFGHJKMNPQRSTVWXYZ',
                                ((floor(extract(epoch FROM at) * 1000)::bigint
                                  >> (45 - 5 * i)) & 31)::int + 1, 1), '' ORDER BY i)
           || '0000000000000000'
      FROM generate_series(0, 9) AS i
$$;

-- Where the legacy partition ends and daily partitions begin (UTC midnight). An empty database
-- starts daily partitions today. A database holding data gets the midnight after tomorrow: rows
-- written by the running services until step 3 commits must stay below it, so steps 2 and 3
-- must finish within 24 hours of this one (`postwire migrate` runs all three in one go).
CREATE TABLE partition_cutover (
    only_row    boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    cutover_at  timestamptz NOT NULL
);
INSERT INTO partition_cutover (cutover_at)
SELECT CASE WHEN NOT EXISTS (SELECT 1 FROM events) AND NOT EXISTS (SELECT 1 FROM deliveries)
                 AND NOT EXISTS (SELECT 1 FROM attempts)
            THEN date_trunc('day', now(), 'UTC')
            ELSE date_trunc('day', now(), 'UTC') + interval '2 days' END;

DO $$
DECLARE
    cutover timestamptz := (SELECT cutover_at FROM partition_cutover);
BEGIN
    EXECUTE format('ALTER TABLE events ADD CONSTRAINT events_legacy_range'
                   ' CHECK (id < %L) NOT VALID', postwire_id_floor('evt', cutover));
    EXECUTE format('ALTER TABLE deliveries ADD CONSTRAINT deliveries_legacy_range'
                   ' CHECK (id < %L) NOT VALID', postwire_id_floor('dlv', cutover));
    EXECUTE format('ALTER TABLE attempts ADD CONSTRAINT attempts_legacy_range'
                   ' CHECK (delivery_id < %L) NOT VALID', postwire_id_floor('dlv', cutover));
END
$$;
