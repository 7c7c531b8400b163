-- A workflow's step graph (WorkflowStepsJson, written once at creation) moves out of the workflows row into a table of
-- its own. SQLite rewrites a whole row, overflow pages included, on any UPDATE of it, and the step trigger updates the
-- workflows row at the end of every step: a chord of 10,000 members rewrote its ~1 MB graph 10,000 times (the chord
-- ran 73 times slower than as many plain tasks).
CREATE TABLE workflow_graphs (id BLOB PRIMARY KEY, steps TEXT NOT NULL);
INSERT INTO workflow_graphs (id, steps) SELECT id, steps FROM workflows;
ALTER TABLE workflows DROP COLUMN steps;
-- The trigger's cancellations look for a workflow's pending (or not started) steps: with the state in the index they
-- read those rows only, not every step of the workflow at the end of each one.
DROP INDEX tasks_workflow;
CREATE INDEX tasks_workflow ON tasks(workflow_id, state) WHERE workflow_id IS NOT NULL;
