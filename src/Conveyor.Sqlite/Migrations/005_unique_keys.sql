-- Unique-key claims (IUniqueKeyStore): which task holds each key; whether it still holds is judged from the task.
CREATE TABLE unique_keys (key TEXT PRIMARY KEY, task_id BLOB NOT NULL, claimed_at INTEGER NOT NULL, window_ms INTEGER NOT NULL) WITHOUT ROWID;
