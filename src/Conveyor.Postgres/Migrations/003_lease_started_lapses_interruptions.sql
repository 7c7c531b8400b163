-- Attempts are spent when a handler starts, not when it is fetched (LeaseRules). lease_started: the current lease's
-- handler started (IQueueBackend.StartAsync; every fetch resets it). lapses: leases that ended without an outcome,
-- started or not (Lease.RecordStartFirst). interruptions: those that had started (dead at LeaseRules.MaxInterruptions).
-- Constant defaults: PostgreSQL 11 and later add the columns without rewriting the table. Leases held now were taken by
-- a build that spent the attempt at fetch and started the handler without recording it: they count as started, as
-- that build counted them.
ALTER TABLE tasks
    ADD COLUMN lease_started boolean NOT NULL DEFAULT false,
    ADD COLUMN lapses integer NOT NULL DEFAULT 0,
    ADD COLUMN interruptions integer NOT NULL DEFAULT 0;
UPDATE tasks SET lease_started = true WHERE state = 2;
