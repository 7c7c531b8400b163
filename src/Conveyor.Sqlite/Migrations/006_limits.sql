-- Rate and concurrency limits (ILimitStore, docs/limits.md). rate_limits: each rate key's next free start time, in
-- microseconds since the Unix epoch (a 1 µs interval is 1,000,000 starts a second). concurrency_slots: one row per
-- task holding a slot of a key, with the worker and lease that hold it and when it runs out unless extended (ms).
CREATE TABLE rate_limits (key TEXT PRIMARY KEY, next_free_us INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE concurrency_slots (
    key TEXT NOT NULL,
    task_id BLOB NOT NULL,
    owner TEXT NOT NULL,
    token INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (key, task_id)
) WITHOUT ROWID;
CREATE INDEX concurrency_slots_owner ON concurrency_slots (owner);
CREATE INDEX concurrency_slots_expires ON concurrency_slots (expires_at);
