namespace Conveyor.Sql;

/// <summary>
/// What the SQL stores' workflow retry (<see cref="Backends.IWorkflowStore.RetryWorkflowAsync"/>) shares: every step that
/// waits is counted again, by the rule of <c>tasks.run_when</c>, as the in-memory backend and Redis's
/// <c>retry_workflow.lua</c> count it.
/// </summary>
public static class WorkflowRetrySql
{
    /// <summary>The states of a step released but not leased (scheduled, queued, retrying), for <c>IN (…)</c>: a retry takes
    /// such a step back to pending when a step it runs after holds it back again. A leased (running) step runs on.</summary>
    public const string Released = StoredStates.Scheduled + ", " + StoredStates.Queued + ", " + StoredStates.Retrying;

    /// <summary>The condition that the task row <paramref name="dependency"/> holds back the step row
    /// <paramref name="step"/> that runs after it: for a step released when all ended (<c>run_when</c> 1), it has not
    /// ended; for any other, it has not succeeded.</summary>
    public static string HoldsBack(string step, string dependency) =>
        $"({dependency}.state NOT IN ({StoredStates.Terminal}) OR ({step}.run_when <> 1 AND {dependency}.state <> {StoredStates.Succeeded}))";

    /// <summary>How many of the steps that the step row <paramref name="step"/> runs after hold it back, as a scalar
    /// subquery over <paramref name="tasks"/> and <paramref name="edges"/> (aliases <c>e</c> and <c>d</c>). A step whose
    /// task retention deleted has no row: it had ended, and holds nothing back.</summary>
    public static string HeldBackBy(string tasks, string edges, string step) =>
        $"(SELECT count(*) FROM {edges} e JOIN {tasks} d ON d.id = e.from_task WHERE e.to_task = {step}.id AND {HoldsBack(step, "d")})";
}
