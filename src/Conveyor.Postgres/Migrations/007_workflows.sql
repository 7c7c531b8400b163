-- Workflows (IWorkflowStore, docs/workflows.md). A step is a task whose workflow_id is set; a step that waits for others
-- is in state 8 (pending), with pending_steps = how many of them have not succeeded yet. workflow_edges: which step runs
-- after which, by task id. Adding the columns rewrites no rows (nullable, or a constant default).
ALTER TABLE tasks ADD COLUMN workflow_id uuid;
ALTER TABLE tasks ADD COLUMN pending_steps integer NOT NULL DEFAULT 0;
CREATE INDEX tasks_workflow ON tasks (workflow_id) WHERE workflow_id IS NOT NULL;
CREATE TABLE workflows (
    seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id uuid NOT NULL UNIQUE,
    name text,
    state integer NOT NULL,
    created_at bigint NOT NULL,
    finished_at bigint,
    steps_left integer NOT NULL,
    steps text NOT NULL
);
CREATE TABLE workflow_edges (from_task uuid NOT NULL, to_task uuid NOT NULL, PRIMARY KEY (from_task, to_task));
-- What the end of a step does to its workflow, in the transaction of the change that ended it (a completion, a lease
-- that ran out for the last time, a cancel), so that a crash can neither lose a release nor release a step early.
-- Tables are named with their schema: the function runs under the caller's search_path.
CREATE FUNCTION workflow_step_ended() RETURNS trigger LANGUAGE plpgsql AS $fn$
DECLARE
    workflow_state integer;
    ready_queue text;
BEGIN
    -- The workflow's row first: every end of a step of one workflow locks it before any other row of the workflow, so
    -- two transactions that end its steps at once (a chord's last two members on two workers) take turns here, and the
    -- second sees the first's releases.
    UPDATE {{schema}}.workflows SET steps_left = steps_left - 1,
        state = CASE WHEN state <> 0 THEN state WHEN NEW.state <> 3 THEN 2 WHEN steps_left = 1 THEN 1 ELSE 0 END,
        finished_at = CASE WHEN state = 0 AND (NEW.state <> 3 OR steps_left = 1) THEN NEW.finished_at ELSE finished_at END
    WHERE id = NEW.workflow_id
    RETURNING state INTO workflow_state;
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
            SELECT DISTINCT queue FROM released WHERE state = 1
        LOOP
            -- The notifier's envelope (sender:sequence:channel:payload) on the backend's channel, sent at commit.
            PERFORM pg_notify(TG_TABLE_SCHEMA || '_wake', 'workflow:0:ready:' || ready_queue);
        END LOOP;
    ELSIF workflow_state = 2 THEN
        -- A failure cancels the workflow's steps that have not started (pending, scheduled, queued, retrying).
        UPDATE {{schema}}.tasks SET state = 6, finished_at = NEW.finished_at, history = history || '|6:' || NEW.finished_at
        WHERE workflow_id = NEW.workflow_id AND state IN (0, 1, 4, 8);
    END IF;
    RETURN NULL;
END
$fn$;
-- Plain tasks (workflow_id NULL) cost the WHEN test only: no call is queued for them.
CREATE TRIGGER workflow_step_ended AFTER UPDATE OF state ON tasks FOR EACH ROW
WHEN (NEW.workflow_id IS NOT NULL AND NEW.state IN (3, 5, 6, 7) AND OLD.state NOT IN (3, 5, 6, 7))
EXECUTE FUNCTION workflow_step_ended();
