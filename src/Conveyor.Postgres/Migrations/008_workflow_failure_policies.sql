-- Failure policies and the error step (docs/workflows.md). tasks.on_failure: what a step's failure does to its workflow
-- (0 stop, 1 continue). workflows.active_steps (was steps_left): its steps scheduled, queued, running or retrying; the
-- workflow ends when it reaches 0. workflows.failed: a step failed. workflows.error_task: the error step's task, stored
-- pending (8), queued by the first failure, cancelled when the workflow ends without one. Adding the columns rewrites no
-- rows (a constant default, or nullable).
ALTER TABLE tasks ADD COLUMN on_failure smallint NOT NULL DEFAULT 0;
ALTER TABLE workflows RENAME COLUMN steps_left TO active_steps;
ALTER TABLE workflows ADD COLUMN failed boolean NOT NULL DEFAULT false;
ALTER TABLE workflows ADD COLUMN error_task uuid;
UPDATE workflows w SET active_steps = (SELECT count(*) FROM tasks t WHERE t.workflow_id = w.id AND t.state IN (0, 1, 2, 4))
WHERE w.state = 0;
-- What the end of a step does to its workflow, in the transaction of the change that ended it (a completion, a lease
-- that ran out for the last time, a cancel), so that a crash can neither lose a release nor release a step early.
-- Tables are named with their schema: the function runs under the caller's search_path. The trigger (migration 007)
-- stays as it is: plain tasks (workflow_id NULL) cost its WHEN test only.
CREATE OR REPLACE FUNCTION workflow_step_ended() RETURNS trigger LANGUAGE plpgsql AS $fn$
DECLARE
    w record;
    released integer := 0;
    error_released boolean := false;
    ready_queue text;
    active integer;
BEGIN
    -- The workflow's row first, locked: every end of a step of one workflow locks it before any other row of the
    -- workflow, so two transactions that end its steps at once (a chord's last two members on two workers) take turns
    -- here, and the second sees the first's releases. A workflow that has ended (failed, cancelled) changes no more: the
    -- cancellations below, which fire this trigger again, find it so.
    SELECT state, active_steps, failed, error_task INTO w FROM {{schema}}.workflows WHERE id = NEW.workflow_id FOR UPDATE;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    IF w.state <> 0 THEN
        RETURN NULL;
    END IF;
    IF NEW.state = 3 THEN
        -- Release each pending step that runs after this one and whose other dependencies have succeeded.
        FOR ready_queue IN
            WITH released AS (
                UPDATE {{schema}}.tasks t SET pending_steps = t.pending_steps - 1,
                    state = CASE WHEN t.pending_steps = 1 THEN 1 ELSE t.state END,
                    history = CASE WHEN t.pending_steps = 1 THEN t.history || '|1:' || NEW.finished_at ELSE t.history END
                FROM {{schema}}.workflow_edges e
                WHERE e.from_task = NEW.id AND t.id = e.to_task AND t.state = 8
                RETURNING t.queue, t.state)
            SELECT queue FROM released WHERE state = 1
        LOOP
            released := released + 1;
            -- The notifier's envelope (sender:sequence:channel:payload) on the backend's channel, sent at commit (one per
            -- distinct payload: PostgreSQL folds duplicates within a transaction).
            PERFORM pg_notify(TG_TABLE_SCHEMA || '_wake', 'workflow:0:ready:' || ready_queue);
        END LOOP;
    ELSIF NOT w.failed AND w.error_task IS NOT NULL THEN
        -- The first failure queues the error step.
        UPDATE {{schema}}.tasks SET state = 1, pending_steps = 0, history = history || '|1:' || NEW.finished_at
        WHERE id = w.error_task AND state = 8
        RETURNING queue INTO ready_queue;
        IF FOUND THEN
            error_released := true;
            PERFORM pg_notify(TG_TABLE_SCHEMA || '_wake', 'workflow:0:ready:' || ready_queue);
        END IF;
    END IF;
    -- The active count: this step ended (unless it ended while pending: a cancel), what it released became active.
    active := w.active_steps - CASE WHEN OLD.state = 8 THEN 0 ELSE 1 END + released + CASE WHEN error_released THEN 1 ELSE 0 END;
    IF NEW.state <> 3 AND NEW.on_failure = 0 THEN
        -- Stopped by a failure: the workflow fails at once (first, so that the cancellations below change it no more),
        -- and its steps that have not started are cancelled (pending, scheduled, queued, retrying), the error step excepted.
        UPDATE {{schema}}.workflows SET state = 2, failed = true, active_steps = active, finished_at = NEW.finished_at WHERE id = NEW.workflow_id;
        UPDATE {{schema}}.tasks SET state = 6, finished_at = NEW.finished_at, history = history || '|6:' || NEW.finished_at
        WHERE workflow_id = NEW.workflow_id AND state IN (0, 1, 4, 8) AND id IS DISTINCT FROM w.error_task;
    ELSIF active = 0 THEN
        -- Nothing active: the workflow ends, and what is still pending can never run (a step it waits for failed, or it
        -- is the error step and no step failed): cancelled.
        UPDATE {{schema}}.workflows SET state = CASE WHEN w.failed OR NEW.state <> 3 THEN 2 ELSE 1 END, failed = w.failed OR NEW.state <> 3,
            active_steps = 0, finished_at = NEW.finished_at
        WHERE id = NEW.workflow_id;
        UPDATE {{schema}}.tasks SET state = 6, finished_at = NEW.finished_at, history = history || '|6:' || NEW.finished_at
        WHERE workflow_id = NEW.workflow_id AND state = 8;
    ELSE
        UPDATE {{schema}}.workflows SET active_steps = active, failed = w.failed OR NEW.state <> 3 WHERE id = NEW.workflow_id;
    END IF;
    RETURN NULL;
END
$fn$;
