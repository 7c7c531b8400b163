-- A workflow's step graph (WorkflowStepsJson, written once at creation) moves out of the workflows row into a table of
-- its own. SQLite rewrites a whole row, overflow pages included, on any UPDATE of it, and the step trigger updates the
-- workflows row at the end of every step: a chord of 10,000 members rewrote its ~1 MB graph 10,000 times (the chord
-- ran 73 times slower than as many plain tasks).
CREATE TABLE workflow_graphs (id BLOB PRIMARY KEY, steps TEXT NOT NULL);
INSERT INTO workflow_graphs (id, steps) SELECT id, steps FROM workflows;
ALTER TABLE workflows DROP COLUMN steps;
-- The cancellations of a workflow's pending steps (the trigger's, and the end written by a batch's successes) read its
-- pending steps only: an index of them, which a step enters when created pending and leaves when released or
-- cancelled (an index over every step's state would change at each fetch and completion of a step).
CREATE INDEX tasks_pending_steps ON tasks(workflow_id) WHERE state = 8;
