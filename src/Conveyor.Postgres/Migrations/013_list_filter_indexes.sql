-- The task list's filters over a large store (GET /api/v1/tasks, the dashboard): without these, a filter whose matches
-- are rare or old walks the primary key newest-first from the end, with a heap read per row.
CREATE INDEX tasks_by_queue ON tasks (queue, seq);
CREATE INDEX tasks_by_task ON tasks (task, seq);
-- Queued tasks listed newest first: an entry at the enqueue only (a new row version takes an entry in a partial index
-- only when it matches, and a fetched task is running).
CREATE INDEX tasks_queued ON tasks (seq) WHERE state = 1;
