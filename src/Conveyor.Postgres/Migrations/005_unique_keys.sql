-- Unique-key claims (IUniqueKeyStore): which task holds each key; whether it still holds is judged from the task.
CREATE TABLE unique_keys (key text PRIMARY KEY, task_id uuid NOT NULL, claimed_at bigint NOT NULL, window_ms bigint NOT NULL);
