-- Workflows (IWorkflowStore, docs/workflows.md). A step is a task whose workflow_id is set; a step that waits for others
-- is in state 8 (pending), with pending_steps = how many of them have not succeeded yet. workflow_edges: which step runs
-- after which, by task id. workflow_ready: queues where the trigger released a step, read and emptied by the completion
-- that released it (in the same transaction) to wake the workers.
ALTER TABLE tasks ADD COLUMN workflow_id BLOB;
ALTER TABLE tasks ADD COLUMN pending_steps INTEGER NOT NULL DEFAULT 0;
CREATE INDEX tasks_workflow ON tasks(workflow_id) WHERE workflow_id IS NOT NULL;
CREATE TABLE workflows (
    seq INTEGER PRIMARY KEY,
    id BLOB NOT NULL,
    name TEXT,
    state INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    finished_at INTEGER,
    steps_left INTEGER NOT NULL,
    steps TEXT NOT NULL
);
CREATE UNIQUE INDEX workflows_id ON workflows(id);
CREATE TABLE workflow_edges (from_task BLOB NOT NULL, to_task BLOB NOT NULL, PRIMARY KEY (from_task, to_task)) WITHOUT ROWID;
CREATE TABLE workflow_ready (queue TEXT PRIMARY KEY) WITHOUT ROWID;
-- What the end of a step does to its workflow, in the transaction of the change that ended it (a completion, a lease
-- that ran out for the last time, a cancel): so a crash can neither lose a release nor release a step early. Plain tasks
-- (workflow_id NULL) cost the WHEN test only. Recursive triggers are off (SQLite's default): the cancellations below do
-- not fire this trigger again, and need not, as the workflow is failed already.
CREATE TRIGGER workflow_step_ended AFTER UPDATE OF state ON tasks
WHEN NEW.workflow_id IS NOT NULL AND NEW.state IN (3, 5, 6, 7) AND OLD.state NOT IN (3, 5, 6, 7)
BEGIN
    -- A success releases each pending step that runs after it and whose other dependencies have succeeded.
    UPDATE tasks SET pending_steps = pending_steps - 1,
        state = CASE WHEN pending_steps = 1 THEN 1 ELSE state END,
        history = CASE WHEN pending_steps = 1 THEN history || '|1:' || NEW.finished_at ELSE history END
    WHERE NEW.state = 3 AND state = 8 AND id IN (SELECT to_task FROM workflow_edges WHERE from_task = NEW.id);
    INSERT INTO workflow_ready (queue)
        SELECT DISTINCT t.queue FROM workflow_edges e JOIN tasks t ON t.id = e.to_task
        WHERE NEW.state = 3 AND e.from_task = NEW.id AND t.state = 1
        ON CONFLICT (queue) DO NOTHING;
    -- The workflow succeeds with its last step; fails with its first step that ends otherwise.
    UPDATE workflows SET steps_left = steps_left - 1,
        state = CASE WHEN state <> 0 THEN state WHEN NEW.state <> 3 THEN 2 WHEN steps_left = 1 THEN 1 ELSE 0 END,
        finished_at = CASE WHEN state = 0 AND (NEW.state <> 3 OR steps_left = 1) THEN NEW.finished_at ELSE finished_at END
    WHERE id = NEW.workflow_id;
    -- A failure cancels the workflow's steps that have not started (pending, scheduled, queued, retrying).
    UPDATE tasks SET state = 6, finished_at = NEW.finished_at, history = history || '|6:' || NEW.finished_at
    WHERE NEW.state <> 3 AND workflow_id = NEW.workflow_id AND state IN (0, 1, 4, 8)
      AND (SELECT state FROM workflows WHERE id = NEW.workflow_id) = 2;
END;
