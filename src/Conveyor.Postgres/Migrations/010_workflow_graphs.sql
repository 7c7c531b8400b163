-- A workflow's step graph (WorkflowStepsJson, written once at creation) moves out of the workflows row into a table of
-- its own, as in SQLite's 011: the step trigger updates the workflows row at the end of every step, and a graph that
-- compresses to under TOAST's threshold is copied into each new version of the row.
CREATE TABLE workflow_graphs (id uuid PRIMARY KEY, steps text NOT NULL);
INSERT INTO workflow_graphs (id, steps) SELECT id, steps FROM workflows;
ALTER TABLE workflows DROP COLUMN steps;
-- The cancellations of a workflow's pending steps read its pending steps only: an index of them, which a step enters
-- when created pending and leaves when released or cancelled.
CREATE INDEX tasks_pending_steps ON tasks (workflow_id) WHERE state = 8;
