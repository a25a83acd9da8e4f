-- Retention, step 3 of 3: events, deliveries and attempts become tables partitioned by day of
-- creation, read from their ULIDs (see 0006). One transaction, metadata only: each old table is
-- renamed to <name>_legacy and attached as the partition of every id below the cutover (the
-- constraint validated in 0007 proves the bound, so ATTACH scans nothing), and its indexes are
-- adopted by the new parent's matching indexes rather than rebuilt. It holds ACCESS EXCLUSIVE
-- locks on the three tables for the few milliseconds this takes; writers wait, nobody fails.
--
-- Partition keys: events and deliveries by their own id; attempts by delivery_id, so a
-- delivery's attempts live (and are dropped) with the delivery, whenever they were made.
-- Foreign keys between these tables cannot survive dropping partitions one table at a time
-- (and would make every drop scan the referencing table), so they go: an event, its
-- deliveries and their attempts are written by one transaction and dropped as one day. A dead
-- letter keeps its own copy of what it shows and outlives its delivery (its own retention).
-- attempts' key becomes the unique (delivery_id, attempt) it already had (a partitioned
-- table's unique keys must contain its partition key); nothing looks an attempt up by id alone.

-- Take every lock this step needs up front, in the order writers take them (an event, then
-- its deliveries, then their attempts and dead letters), so a writer caught mid-transaction
-- finishes first instead of deadlocking with the swap. endpoints only needs SHARE ROW EXCLUSIVE
-- (for the foreign key below), which still lets inserts check their endpoint (FOR KEY SHARE).
LOCK TABLE endpoints IN SHARE ROW EXCLUSIVE MODE;
LOCK TABLE events, deliveries, attempts, dead_letters IN ACCESS EXCLUSIVE MODE;

ALTER TABLE deliveries DROP CONSTRAINT IF EXISTS deliveries_event_id_fkey;
ALTER TABLE attempts DROP CONSTRAINT IF EXISTS attempts_delivery_id_fkey;
ALTER TABLE dead_letters DROP CONSTRAINT IF EXISTS dead_letters_delivery_id_fkey;
ALTER TABLE attempts DROP CONSTRAINT attempts_pkey;

-- Create the partition of one UTC day of `parent` if it is missing; true when it was created.
-- The new table is attached, not created as a partition: ATTACH takes only a SHARE UPDATE
-- EXCLUSIVE lock on the parent, so ingest, claims and reads go on. `key_prefix` is the id
-- prefix of the partition key (evt for events, dlv for deliveries and attempts).
CREATE FUNCTION postwire_create_day_partition(parent text, key_prefix text, day date)
RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    name text := parent || '_p' || to_char(day, 'YYYYMMDD');
    lo text := postwire_id_floor(key_prefix, day::timestamp AT TIME ZONE 'UTC');
    hi text := postwire_id_floor(key_prefix, (day + 1)::timestamp AT TIME ZONE 'UTC');
BEGIN
    IF to_regclass(name) IS NOT NULL THEN
        RETURN false;
    END IF;
    EXECUTE format('CREATE TABLE %I (LIKE %I INCLUDING DEFAULTS INCLUDING CONSTRAINTS'
                   ' INCLUDING STORAGE)', name, parent);
    EXECUTE format('ALTER TABLE %I ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)',
                   parent, name, lo, hi);
    RETURN true;
END
$$;

DO $$
DECLARE
    spec record;
    idx record;
    cutover timestamptz := (SELECT cutover_at FROM partition_cutover);
    day date;
    empty boolean;
BEGIN
    -- A database without history (a new install) keeps no legacy partition at all.
    empty := NOT EXISTS (SELECT 1 FROM events) AND NOT EXISTS (SELECT 1 FROM deliveries)
             AND NOT EXISTS (SELECT 1 FROM attempts);
    FOR spec IN SELECT * FROM (VALUES ('events', 'id', 'evt'), ('deliveries', 'id', 'dlv'),
                                      ('attempts', 'delivery_id', 'dlv')) AS s(t, col, prefix)
    LOOP
        EXECUTE format('ALTER TABLE %I RENAME TO %I', spec.t, spec.t || '_legacy');
        FOR idx IN SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
                    WHERE i.indrelid = (spec.t || '_legacy')::regclass
        LOOP
            EXECUTE format('ALTER INDEX %I RENAME TO %I', idx.relname,
                           spec.t || '_legacy' || substr(idx.relname, length(spec.t) + 1));
        END LOOP;
        EXECUTE format('CREATE TABLE %I (LIKE %I INCLUDING DEFAULTS INCLUDING CONSTRAINTS'
                       ' INCLUDING INDEXES INCLUDING STORAGE INCLUDING COMMENTS)'
                       ' PARTITION BY RANGE (%I)', spec.t, spec.t || '_legacy', spec.col);
        EXECUTE format('ALTER TABLE %I DROP CONSTRAINT %I', spec.t, spec.t || '_legacy_range');
        EXECUTE format('ALTER TABLE %I ATTACH PARTITION %I FOR VALUES FROM (MINVALUE) TO (%L)',
                       spec.t, spec.t || '_legacy', postwire_id_floor(spec.prefix, cutover));
        -- give the parent's indexes the names the old table's had (events_pkey, ...)
        FOR idx IN SELECT c.relname AS parent_index, lc.relname AS legacy_index
                     FROM pg_inherits h
                     JOIN pg_class c ON c.oid = h.inhparent
                     JOIN pg_class lc ON lc.oid = h.inhrelid
                     JOIN pg_index li ON li.indexrelid = lc.oid
                    WHERE li.indrelid = (spec.t || '_legacy')::regclass
                      AND c.relname <> spec.t || substr(lc.relname, length(spec.t || '_legacy') + 1)
        LOOP
            EXECUTE format('ALTER INDEX %I RENAME TO %I', idx.parent_index,
                           spec.t || substr(idx.legacy_index, length(spec.t || '_legacy') + 1));
        END LOOP;
        IF empty THEN
            EXECUTE format('ALTER TABLE %I DETACH PARTITION %I', spec.t, spec.t || '_legacy');
            EXECUTE format('DROP TABLE %I', spec.t || '_legacy');
        END IF;
    END LOOP;
    -- Daily partitions from the cutover to a week ahead; the maintenance loop keeps them ahead.
    FOR spec IN SELECT * FROM (VALUES ('events', 'evt'), ('deliveries', 'dlv'),
                                      ('attempts', 'dlv')) AS s(t, prefix)
    LOOP
        day := (cutover AT TIME ZONE 'UTC')::date;
        WHILE day <= (now() AT TIME ZONE 'UTC')::date + 7 LOOP
            PERFORM postwire_create_day_partition(spec.t, spec.prefix, day);
            day := day + 1;
        END LOOP;
    END LOOP;
END
$$;

-- The FK the old deliveries table had to endpoints, on the new parent (the legacy partition's
-- identical constraint is adopted, so nothing is scanned).
ALTER TABLE deliveries ADD CONSTRAINT deliveries_endpoint_id_fkey
    FOREIGN KEY (endpoint_id) REFERENCES endpoints (id);

-- What each purge has removed: a row older than `purged_before` that is missing is past
-- retention (the API says so instead of a bare "not found").
CREATE TABLE retention_horizon (
    family         text PRIMARY KEY CHECK (family IN ('events', 'dead_letters', 'audit_log')),
    purged_before  timestamptz NOT NULL,
    updated_at     timestamptz NOT NULL DEFAULT now()
);
