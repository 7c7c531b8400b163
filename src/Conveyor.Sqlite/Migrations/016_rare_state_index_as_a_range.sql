-- The rare states' index (013) with its predicate as a range: SQLite evaluates a partial index's predicate on the old
-- and the new row of every UPDATE that writes state, and codes an IN list of three or more values as a temporary
-- b-tree, built and dropped on every run of the statement: two for every completion and every lease, about a tenth of
-- the writer's time in a drain (docs/benchmarks.md). NOT BETWEEN is two comparisons. Queued, running and succeeded are
-- 1, 2 and 3; the listing repeats this predicate (SqliteDialect.RareStates), as SQLite needs to see it written out.
DROP INDEX tasks_rare_state;
CREATE INDEX tasks_rare_state ON tasks(state) WHERE state NOT BETWEEN 1 AND 3;
