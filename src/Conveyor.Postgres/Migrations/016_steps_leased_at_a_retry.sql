-- A step leased when its workflow was retried (docs/workflows.md, Retry) keeps the count the retry gave it
-- (pending_steps: the steps it runs after that hold it back, as WorkflowRetrySql counts them), and the ends of those
-- steps lower it while it is not pending (running, or scheduled, queued or retrying after an attempt that asked for a
-- retry; any other such step's count is 0), without queueing it: if its lease ends without an outcome while the count
-- is above 0, it goes back to pending and is queued when the count reaches 0 (PostgresBackend.LeaseHeldBack), rather
-- than running before them. As migration 015's function, the two releases changed so: one update covers the pending
-- steps and the counted ones, so that a row a lease's end changed meanwhile is read again as it now is, and a step counts
-- as released when this update queued it (queued now, pending or leased as the statement's snapshot read it).
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
    -- here, and the second sees the first's releases. A workflow that has ended (failed, cancelled) changes no more, but
    -- for the steps a stop spared.
    SELECT state, active_steps, failed, error_task INTO w FROM {{schema}}.workflows WHERE id = NEW.workflow_id FOR UPDATE;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    IF w.state <> 0 THEN
        IF w.state = 2 AND w.active_steps = -1 THEN
            FOR ready_queue IN
                WITH released AS (
                    UPDATE {{schema}}.tasks t SET pending_steps = t.pending_steps - 1,
                        state = CASE WHEN t.state = 8 AND t.pending_steps = 1 THEN 1 ELSE t.state END,
                        history = CASE WHEN t.state = 8 AND t.pending_steps = 1 THEN t.history || '|1:' || NEW.finished_at ELSE t.history END
                    FROM {{schema}}.workflow_edges e JOIN {{schema}}.tasks o ON o.id = e.to_task
                    WHERE e.from_task = NEW.id AND t.id = e.to_task AND (t.state = 8 OR (t.pending_steps > 0 AND t.state IN (0, 1, 2, 4)))
                      AND t.run_when = 1
                    RETURNING t.queue, t.state = 1 AND o.state IN (8, 2) AS queued)
                SELECT queue FROM released WHERE queued
            LOOP
                PERFORM pg_notify(TG_TABLE_SCHEMA || '_wake', 'workflow:0:ready:' || ready_queue);
            END LOOP;
        END IF;
        RETURN NULL;
    END IF;
    -- Release each pending step that runs after this one and whose other dependencies have succeeded (a success), or
    -- that is released when all ended (any end).
    FOR ready_queue IN
        WITH released AS (
            UPDATE {{schema}}.tasks t SET pending_steps = t.pending_steps - 1,
                state = CASE WHEN t.state = 8 AND t.pending_steps = 1 THEN 1 ELSE t.state END,
                history = CASE WHEN t.state = 8 AND t.pending_steps = 1 THEN t.history || '|1:' || NEW.finished_at ELSE t.history END
            FROM {{schema}}.workflow_edges e JOIN {{schema}}.tasks o ON o.id = e.to_task
            WHERE e.from_task = NEW.id AND t.id = e.to_task AND (t.state = 8 OR (t.pending_steps > 0 AND t.state IN (0, 1, 2, 4)))
              AND (NEW.state = 3 OR t.run_when = 1)
            RETURNING t.queue, t.state = 1 AND o.state IN (8, 2) AS queued)
        SELECT queue FROM released WHERE queued
    LOOP
        released := released + 1;
        -- The notifier's envelope (sender:sequence:channel:payload) on the backend's channel, sent at commit (one per
        -- distinct payload: PostgreSQL folds duplicates within a transaction).
        PERFORM pg_notify(TG_TABLE_SCHEMA || '_wake', 'workflow:0:ready:' || ready_queue);
    END LOOP;
    IF NEW.state <> 3 AND NOT w.failed AND w.error_task IS NOT NULL THEN
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
        -- Stopped by a failure: the workflow fails at once (first, so that the cancellations below change it no more but
        -- for the spared steps; its count is no longer kept, -1), and its steps that have not started are cancelled
        -- (pending, scheduled, queued, retrying), the error step and the steps released when all ended excepted.
        UPDATE {{schema}}.workflows SET state = 2, failed = true, active_steps = -1, finished_at = NEW.finished_at WHERE id = NEW.workflow_id;
        UPDATE {{schema}}.tasks SET state = 6, finished_at = NEW.finished_at, history = history || '|6:' || NEW.finished_at
        WHERE workflow_id = NEW.workflow_id AND state IN (0, 1, 4, 8) AND run_when = 0 AND id IS DISTINCT FROM w.error_task;
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
