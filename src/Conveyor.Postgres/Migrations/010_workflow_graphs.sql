-- A workflow's step graph (WorkflowStepsJson, written once at creation) moves out of the workflows row into a table of
-- its own, as in SQLite's 011: the step trigger updates the workflows row at the end of every step, and a graph that
-- compresses to under TOAST's threshold is copied into each new version of the row.
CREATE TABLE workflow_graphs (id uuid PRIMARY KEY, steps text NOT NULL);
INSERT INTO workflow_graphs (id, steps) SELECT id, steps FROM workflows;
ALTER TABLE workflows DROP COLUMN steps;
-- The trigger's cancellations look for a workflow's pending (or not started) steps: with the state in the index they
-- read those rows only.
DROP INDEX tasks_workflow;
CREATE INDEX tasks_workflow ON tasks (workflow_id, state) WHERE workflow_id IS NOT NULL;
