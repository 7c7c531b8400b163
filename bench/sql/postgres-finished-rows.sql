DROP SCHEMA IF EXISTS bloat_check CASCADE;
CREATE SCHEMA bloat_check;
SET search_path TO bloat_check;
\i :ddl
-- :finished finished rows, then 1,000 ready ones (newer seq), as after days of traffic
INSERT INTO tasks (id, task, queue, state, args, max_attempts, retry_base_ms, retry_max_ms, retry_jitter, created_at, started_at, finished_at, history)
SELECT gen_random_uuid(), 'conveyor.noop', 'default', 3, NULL, 3, 1000, 60000, 0.2, 1, 2, 3, '1:1|2:2|3:3' FROM generate_series(1, :finished);
INSERT INTO tasks (id, task, queue, state, args, max_attempts, retry_base_ms, retry_max_ms, retry_jitter, created_at, history)
SELECT gen_random_uuid(), 'conveyor.noop', 'default', 1, NULL, 3, 1000, 60000, 0.2, 1, '1:1' FROM generate_series(1, 1000);
INSERT INTO queues (name) VALUES ('default');
VACUUM ANALYZE tasks;
SELECT pg_size_pretty(pg_total_relation_size('tasks')) AS total, pg_size_pretty(pg_relation_size('tasks_ready')) AS ready_index;
BEGIN;
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, TIMING OFF, SUMMARY ON)
WITH c AS (SELECT seq FROM tasks WHERE queue = 'default' AND state = 1 AND NOT EXISTS (SELECT 1 FROM queues WHERE name = 'default' AND paused)
  ORDER BY priority DESC, seq LIMIT 64 FOR UPDATE SKIP LOCKED)
UPDATE tasks t SET state = 2, attempt = t.attempt + 1, lease_owner = 'w', lease_token = 1, lease_expires = 10, started_at = 5, history = t.history || '|2:5'
FROM c WHERE t.seq = c.seq RETURNING t.seq;
ROLLBACK;
