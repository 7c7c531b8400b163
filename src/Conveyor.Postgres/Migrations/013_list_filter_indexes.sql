-- Queued tasks listed newest first (GET /api/v1/tasks?state=queued) over a large store: tasks_rare_state leaves
-- queued tasks out, and the planner otherwise walks the primary key from the newest end, with a heap read per row,
-- past every finished task to the oldest queued ones. A new row version takes an entry in a partial index only when
-- it matches: one entry at the enqueue, none when the task is fetched (running) or ends.
CREATE INDEX tasks_queued ON tasks (seq) WHERE state = 1;
