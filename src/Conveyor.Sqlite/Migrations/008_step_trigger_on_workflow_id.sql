-- The step trigger of 007 fired on every UPDATE OF state: SQLite runs a row trigger's WHEN inside the trigger's own
-- program, so every fetch and completion of a plain task paid a sub-program call (a quarter of the drain rate of no-op
-- tasks). It now fires on UPDATE OF workflow_id, which only the statements that can end a step name (workflow_id =
-- workflow_id: the completion of a row that has a workflow, lease endings, cancels); its body is 007's.
DROP TRIGGER workflow_step_ended;
CREATE TRIGGER workflow_step_ended AFTER UPDATE OF workflow_id ON tasks
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
