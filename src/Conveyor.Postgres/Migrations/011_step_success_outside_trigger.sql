-- A step's success is written by the completion statement itself (PostgresBackend.CompleteSql and CompleteStepsSql):
-- it marks the step's row pending_steps = -1 (a succeeded step waits for nothing), and the step trigger skips rows so
-- marked. The completion then releases the dependents with one update per dependent and counts each workflow once per
-- batch, where the trigger ran a PL/pgSQL function per ended step that read and updated the workflow's row (a chord's
-- members cost three times a plain task, docs/benchmarks.md). Failures, lease endings and cancels still fire it.
DROP TRIGGER workflow_step_ended ON tasks;
CREATE TRIGGER workflow_step_ended AFTER UPDATE OF state ON tasks FOR EACH ROW
WHEN (NEW.workflow_id IS NOT NULL AND NEW.state IN (3, 5, 6, 7) AND OLD.state NOT IN (3, 5, 6, 7)
      AND NOT (NEW.state = 3 AND NEW.pending_steps = -1))
EXECUTE FUNCTION workflow_step_ended();
-- A workflow that ends (succeeded or failed, from running) cancels its steps still pending: they can never run (a step
-- they wait for failed, or the error step when no step failed). Fired at the end of the statement that ended the
-- workflow, so the completion statement that ends it (by its successes) and releases dependents in the same statement
-- does not update a row twice. The step function's own ends (migration 008) cancel the same steps; whichever runs
-- first finds them, the other none. Cancelling fires the step trigger, which finds the workflow ended.
CREATE FUNCTION workflow_ended() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    UPDATE {{schema}}.tasks SET state = 6, finished_at = NEW.finished_at, history = history || '|6:' || NEW.finished_at
    WHERE workflow_id = NEW.id AND state = 8;
    RETURN NULL;
END
$fn$;
CREATE TRIGGER workflow_ended AFTER UPDATE OF state ON workflows FOR EACH ROW
WHEN (OLD.state = 0 AND NEW.state IN (1, 2))
EXECUTE FUNCTION workflow_ended();
