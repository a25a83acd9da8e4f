-- Retention, step 2 of 3: prove every existing row lies below the cutover. VALIDATE CONSTRAINT
-- scans each table under a SHARE UPDATE EXCLUSIVE lock: reads and writes go on meanwhile
-- (only DDL and VACUUM wait). On a large database this is the long step.
ALTER TABLE events VALIDATE CONSTRAINT events_legacy_range;
ALTER TABLE deliveries VALIDATE CONSTRAINT deliveries_legacy_range;
ALTER TABLE attempts VALIDATE CONSTRAINT attempts_legacy_range;
