-- Failure policies and the error step (docs/workflows.md). tasks.on_failure: what a step's failure does to its workflow
-- (0 stop, 1 continue). workflows.active_steps (was steps_left): its steps scheduled, queued, running or retrying; the
-- workflow ends when it reaches 0. workflows.failed: a step failed. workflows.error_task: the error step's task, stored
-- pending (8), queued by the first failure, cancelled when the workflow ends without one.
ALTER TABLE tasks ADD COLUMN on_failure INTEGER NOT NULL DEFAULT 0;
DROP TRIGGER workflow_step_ended;
ALTER TABLE workflows RENAME COLUMN steps_left TO active_steps;
ALTER TABLE workflows ADD COLUMN failed INTEGER NOT NULL DEFAULT 0;
ALTER TABLE workflows ADD COLUMN error_task BLOB;
UPDATE workflows SET active_steps = (SELECT count(*) FROM tasks t WHERE t.workflow_id = workflows.id AND t.state IN (0, 1, 2, 4))
WHERE state = 0;
-- What the end of a step does to its workflow, in the transaction of the change that ended it (a completion, a lease
-- that ran out for the last time, a cancel): so a crash can neither lose a release nor release a step early. As in 008,
-- it fires on UPDATE OF workflow_id, which only the statements that can end a step name: plain tasks' fetches and
-- completions run no trigger program. Each statement's guard on NEW (constant in a trigger) is tested once, before
-- any row is read. Recursive triggers are off (SQLite's default): the cancellations below do not fire this trigger again,
-- and need not: each is made after the workflow's own row says what they mean.
CREATE TRIGGER workflow_step_ended AFTER UPDATE OF workflow_id ON tasks
WHEN NEW.workflow_id IS NOT NULL AND NEW.state IN (3, 5, 6, 7) AND OLD.state NOT IN (3, 5, 6, 7)
BEGIN
    -- A success releases each pending step that runs after it and whose other dependencies have succeeded.
    UPDATE tasks SET pending_steps = pending_steps - 1,
        state = CASE WHEN pending_steps = 1 THEN 1 ELSE state END,
        history = CASE WHEN pending_steps = 1 THEN history || '|1:' || NEW.finished_at ELSE history END
    WHERE NEW.state = 3 AND state = 8 AND id IN (SELECT to_task FROM workflow_edges WHERE from_task = NEW.id)
      AND (SELECT state FROM workflows WHERE id = NEW.workflow_id) = 0;
    INSERT INTO workflow_ready (queue)
        SELECT DISTINCT t.queue FROM workflow_edges e JOIN tasks t ON t.id = e.to_task
        WHERE NEW.state = 3 AND e.from_task = NEW.id AND t.state = 1
        ON CONFLICT (queue) DO NOTHING;
    -- The first failure of a running workflow queues its error step.
    UPDATE tasks SET state = 1, pending_steps = 0, history = history || '|1:' || NEW.finished_at
    WHERE NEW.state <> 3 AND state = 8 AND id = (SELECT error_task FROM workflows WHERE id = NEW.workflow_id AND state = 0 AND failed = 0);
    INSERT INTO workflow_ready (queue)
        SELECT t.queue FROM workflows w JOIN tasks t ON t.id = w.error_task
        WHERE NEW.state <> 3 AND w.id = NEW.workflow_id AND w.state = 0 AND w.failed = 0 AND t.state = 1
        ON CONFLICT (queue) DO NOTHING;
    -- The active count: this step ended, the steps it released (or the error step) became active.
    UPDATE workflows SET
        active_steps = active_steps - CASE WHEN OLD.state = 8 THEN 0 ELSE 1 END + CASE
            WHEN NEW.state = 3 THEN (SELECT count(*) FROM workflow_edges e JOIN tasks t ON t.id = e.to_task WHERE e.from_task = NEW.id AND t.state = 1)
            WHEN failed = 0 AND error_task IS NOT NULL AND error_task <> NEW.id THEN 1
            ELSE 0 END,
        failed = CASE WHEN NEW.state <> 3 THEN 1 ELSE failed END
    WHERE id = NEW.workflow_id AND state = 0;
    -- The workflow ends: failed at once by a failure under the policy stop, else when no step of it is active.
    UPDATE workflows SET state = CASE WHEN failed = 1 THEN 2 ELSE 1 END, finished_at = NEW.finished_at
    WHERE id = NEW.workflow_id AND state = 0 AND (active_steps = 0 OR (NEW.state <> 3 AND NEW.on_failure = 0));
    -- Stopped by a failure: its steps that have not started are cancelled (pending, scheduled, queued, retrying), the
    -- error step excepted.
    UPDATE tasks SET state = 6, finished_at = NEW.finished_at, history = history || '|6:' || NEW.finished_at
    WHERE NEW.state <> 3 AND NEW.on_failure = 0 AND workflow_id = NEW.workflow_id AND state IN (0, 1, 4, 8)
      AND id IS NOT (SELECT error_task FROM workflows WHERE id = NEW.workflow_id)
      AND (SELECT state FROM workflows WHERE id = NEW.workflow_id) = 2;
    -- Ended with nothing active: what is still pending can never run (a step it waits for failed, or it is the error step
    -- and no step failed), and is cancelled.
    UPDATE tasks SET state = 6, finished_at = NEW.finished_at, history = history || '|6:' || NEW.finished_at
    WHERE workflow_id = NEW.workflow_id AND state = 8
      AND (SELECT state IN (1, 2) AND active_steps = 0 FROM workflows WHERE id = NEW.workflow_id);
END;
