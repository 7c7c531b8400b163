-- The task list filtered by a rare state (GET /api/v1/tasks?state=dead, the dashboard's failures) over a large store:
-- without an index the listing walks the table newest-first from the end. Every task passes through queued (1),
-- running (2) and succeeded (3): those are left out, so that the happy path takes no entry (the listing of those
-- states finds its rows at once from the newest end, or through tasks_ready for queued ones). seq is the rowid, so
-- the index is ordered by (state, seq). The listing repeats this predicate beside "state = n": SQLite uses a partial
-- index only when the query's WHERE clause contains its terms.
-- Queue and task names are not indexed: the two indexes cost 15-45 % of the batched enqueue rate and about a fifth
-- of the one-at-a-time rate in the bench (docs/benchmarks.md, "Task list filters").
CREATE INDEX tasks_rare_state ON tasks(state) WHERE state NOT IN (1, 2, 3);
