-- Attempts are spent when a handler starts, not when it is fetched (LeaseRules). lease_started: the current lease's
-- handler started (IQueueBackend.StartAsync; every fetch resets it). lapses: leases that ended without an outcome,
-- started or not (Lease.RecordStartFirst). interruptions: those that had started (dead at LeaseRules.MaxInterruptions).
-- Rows of an existing database take the defaults, but leases held now were taken by a build that spent the attempt at
-- fetch and started the handler without recording it: they count as started, as that build counted them.
ALTER TABLE tasks ADD COLUMN lease_started INTEGER NOT NULL DEFAULT 0;
ALTER TABLE tasks ADD COLUMN lapses INTEGER NOT NULL DEFAULT 0;
ALTER TABLE tasks ADD COLUMN interruptions INTEGER NOT NULL DEFAULT 0;
UPDATE tasks SET lease_started = 1 WHERE state = 2;
