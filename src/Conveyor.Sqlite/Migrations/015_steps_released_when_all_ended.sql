-- Steps released once every step they run after has ended, whatever the outcome (docs/workflows.md, a batch's
-- onComplete). tasks.run_when (WorkflowRunWhen): 0 released once every step it runs after succeeded, 1 once each ended
-- (succeeded, dead, cancelled, expired). Such a step's count falls at every end of a step it runs after, also after a
-- stop failed the workflow: the stop spares it (as the error step) and it runs once the running steps finished. A
-- workflow failed by a stop keeps active_steps = -1 (its count is no longer kept), so that no later end takes it for a
-- workflow with nothing active and cancels its spared steps. Adding the column rewrites no row.
ALTER TABLE tasks ADD COLUMN run_when INTEGER NOT NULL DEFAULT 0;
DROP TRIGGER workflow_step_ended;
-- As migration 009's, with the changes above. It fires on UPDATE OF workflow_id, which only the statements that can end a
-- step name (a step's success is written by the completion batch, SqliteBackend.StepSuccesses). Recursive triggers are
-- off (SQLite's default): the cancellations below do not fire it again, so the steps released when all ended count
-- them by a recount of the steps they run after that have not ended.
CREATE TRIGGER workflow_step_ended AFTER UPDATE OF workflow_id ON tasks
WHEN NEW.workflow_id IS NOT NULL AND NEW.state IN (3, 5, 6, 7) AND OLD.state NOT IN (3, 5, 6, 7)
BEGIN
    -- A success releases each pending step that runs after it and whose other dependencies have succeeded; any end
    -- counts for a step released when all ended, also in a workflow failed by a stop, which spared it.
    UPDATE tasks SET pending_steps = pending_steps - 1,
        state = CASE WHEN pending_steps = 1 THEN 1 ELSE state END,
        history = CASE WHEN pending_steps = 1 THEN history || '|1:' || NEW.finished_at ELSE history END
    WHERE state = 8 AND id IN (SELECT to_task FROM workflow_edges WHERE from_task = NEW.id)
      AND (NEW.state = 3 OR run_when = 1)
      AND (SELECT state = 0 OR (state = 2 AND active_steps = -1 AND tasks.run_when = 1) FROM workflows WHERE id = NEW.workflow_id);
    INSERT INTO workflow_ready (queue)
        SELECT DISTINCT t.queue FROM workflow_edges e JOIN tasks t ON t.id = e.to_task
        WHERE e.from_task = NEW.id AND t.state = 1
        ON CONFLICT (queue) DO NOTHING;
    -- The first failure of a running workflow queues its error step.
    UPDATE tasks SET state = 1, pending_steps = 0, history = history || '|1:' || NEW.finished_at
    WHERE NEW.state <> 3 AND state = 8 AND id = (SELECT error_task FROM workflows WHERE id = NEW.workflow_id AND state = 0 AND failed = 0);
    INSERT INTO workflow_ready (queue)
        SELECT t.queue FROM workflows w JOIN tasks t ON t.id = w.error_task
        WHERE NEW.state <> 3 AND w.id = NEW.workflow_id AND w.state = 0 AND w.failed = 0 AND t.state = 1
        ON CONFLICT (queue) DO NOTHING;
    -- The active count: this step ended, the steps it released (and the error step) became active.
    UPDATE workflows SET
        active_steps = active_steps - CASE WHEN OLD.state = 8 THEN 0 ELSE 1 END
            + (SELECT count(*) FROM workflow_edges e JOIN tasks t ON t.id = e.to_task WHERE e.from_task = NEW.id AND t.state = 1)
            + CASE WHEN NEW.state <> 3 AND failed = 0 AND error_task IS NOT NULL AND error_task <> NEW.id THEN 1 ELSE 0 END,
        failed = CASE WHEN NEW.state <> 3 THEN 1 ELSE failed END
    WHERE id = NEW.workflow_id AND state = 0;
    -- The workflow ends: failed at once by a failure under the policy stop (its count no longer kept: -1), else when no
    -- step of it is active.
    UPDATE workflows SET state = CASE WHEN failed = 1 THEN 2 ELSE 1 END, finished_at = NEW.finished_at,
        active_steps = CASE WHEN NEW.state <> 3 AND NEW.on_failure = 0 THEN -1 ELSE active_steps END
    WHERE id = NEW.workflow_id AND state = 0 AND (active_steps = 0 OR (NEW.state <> 3 AND NEW.on_failure = 0));
    -- Stopped by a failure: its steps that have not started are cancelled (pending, scheduled, queued, retrying), the
    -- error step and the steps released when all ended excepted.
    UPDATE tasks SET state = 6, finished_at = NEW.finished_at, history = history || '|6:' || NEW.finished_at
    WHERE NEW.state <> 3 AND NEW.on_failure = 0 AND workflow_id = NEW.workflow_id AND state IN (0, 1, 4, 8) AND run_when = 0
      AND id IS NOT (SELECT error_task FROM workflows WHERE id = NEW.workflow_id)
      AND (SELECT state FROM workflows WHERE id = NEW.workflow_id) = 2;
    -- ... and the steps it spared count what the stop cancelled: each waits for the steps it runs after that have not
    -- ended, and is queued when none is left.
    UPDATE tasks SET pending_steps = (SELECT count(*) FROM workflow_edges e JOIN tasks d ON d.id = e.from_task
            WHERE e.to_task = tasks.id AND d.state NOT IN (3, 5, 6, 7))
    WHERE NEW.state <> 3 AND NEW.on_failure = 0 AND workflow_id = NEW.workflow_id AND state = 8 AND run_when = 1
      AND (SELECT state = 2 AND active_steps = -1 FROM workflows WHERE id = NEW.workflow_id);
    UPDATE tasks SET state = 1, history = history || '|1:' || NEW.finished_at
    WHERE NEW.state <> 3 AND NEW.on_failure = 0 AND workflow_id = NEW.workflow_id AND state = 8 AND run_when = 1 AND pending_steps = 0
      AND (SELECT state = 2 AND active_steps = -1 FROM workflows WHERE id = NEW.workflow_id);
    INSERT INTO workflow_ready (queue)
        SELECT DISTINCT queue FROM tasks
        WHERE NEW.state <> 3 AND NEW.on_failure = 0 AND workflow_id = NEW.workflow_id AND state = 1 AND run_when = 1
        ON CONFLICT (queue) DO NOTHING;
    -- Ended with nothing active: what is still pending can never run (a step it waits for failed, or it is the error step
    -- and no step failed), and is cancelled.
    UPDATE tasks SET state = 6, finished_at = NEW.finished_at, history = history || '|6:' || NEW.finished_at
    WHERE workflow_id = NEW.workflow_id AND state = 8
      AND (SELECT state IN (1, 2) AND active_steps = 0 FROM workflows WHERE id = NEW.workflow_id);
END;
