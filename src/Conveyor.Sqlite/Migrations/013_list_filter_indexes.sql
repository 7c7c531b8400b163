-- The task list's filters over a large store (GET /api/v1/tasks, the dashboard): without these, a filter whose matches
-- are rare or old walks the table newest-first from the end. seq is the rowid, so each index below is ordered by
-- (key, seq) and serves "WHERE key = ? ORDER BY seq DESC LIMIT n" directly.
-- queue and task never change after the insert: their indexes cost an entry at the insert (and at the delete), none
-- on the state updates a task goes through.
CREATE INDEX tasks_by_queue ON tasks(queue);
CREATE INDEX tasks_by_task ON tasks(task);
-- Every task passes through queued (1), running (2) and succeeded (3): those are left out so that the happy path
-- takes no entry; the listing repeats this predicate beside "state = ?" so that SQLite may use the index.
CREATE INDEX tasks_rare_state ON tasks(state) WHERE state NOT IN (1, 2, 3);
