using System.Text.Json;
using Conveyor.Workflows;

namespace Conveyor.Backends;

/// <summary>A workflow to store: its steps as messages, each with the task ids of the steps it runs after.</summary>
public sealed record NewWorkflow
{
    /// <summary>Workflow id, a UUIDv7.</summary>
    public required Guid Id { get; init; }
    /// <summary>Optional name, for listing and filtering.</summary>
    public string? Name { get; init; }
    /// <summary>When it was created.</summary>
    public required DateTimeOffset CreatedAt { get; init; }
    /// <summary>The steps, in the order given; validated (<see cref="WorkflowValidator"/>): ids unique, no cycle.</summary>
    public required IReadOnlyList<NewWorkflowStep> Steps { get; init; }

    /// <summary>The step graph as <see cref="StoredWorkflow.Steps"/> gives it back.</summary>
    public IReadOnlyList<WorkflowStepInfo> StepInfos()
    {
        var byTask = Steps.ToDictionary(s => s.Message.Id, s => s.StepId);
        return [.. Steps.Select(s => new WorkflowStepInfo(s.StepId, s.Message.Id, [.. s.After.Select(id => byTask[id])])
        {
            OnFailure = s.OnFailure,
            IsErrorStep = s.IsErrorStep,
            RunWhen = s.RunWhen,
        })];
    }
}

/// <summary>One step to store.</summary>
/// <param name="StepId">The step's id within its workflow.</param>
/// <param name="Message">Its task; its headers carry <see cref="WorkflowHeaders"/>.</param>
/// <param name="After">The task ids of the steps it runs after, in order (the order its inputs are given in). Empty: it
/// is stored as its message says (queued, or scheduled for an ETA); else <see cref="TaskState.Pending"/>.</param>
public sealed record NewWorkflowStep(string StepId, TaskMessage Message, IReadOnlyList<Guid> After)
{
    /// <summary>What its failure does to the workflow (resolved: the step's own policy, else the workflow's). The error
    /// step's is <see cref="WorkflowFailurePolicy.Continue"/>: its failure cancels nothing.</summary>
    public WorkflowFailurePolicy OnFailure { get; init; }

    /// <summary>Whether it is the workflow's error step (at most one; <see cref="After"/> empty): stored
    /// <see cref="TaskState.Pending"/>, queued by the first failure of a step while the workflow runs, cancelled when the
    /// workflow ends without one.</summary>
    public bool IsErrorStep { get; init; }

    /// <summary>When it is released: <see cref="WorkflowRunWhen.AllSucceeded"/> (its count falls at each success of a step
    /// it runs after), or <see cref="WorkflowRunWhen.AllEnded"/> (its count falls at each end of one, whatever the
    /// outcome, also once a stop failed the workflow; it is not cancelled by a stop).</summary>
    public WorkflowRunWhen RunWhen { get; init; }
}

/// <summary>A workflow's state.</summary>
/// <remarks>The numeric values are stored by backends: never renumber them.</remarks>
public enum WorkflowState
{
    /// <summary>Some step has not finished, and none failed.</summary>
    Running = 0,
    /// <summary>Every step succeeded. Terminal.</summary>
    Succeeded = 1,
    /// <summary>A step ended dead, cancelled or expired (after its own retries). Under
    /// <see cref="WorkflowFailurePolicy.Stop"/> at once: the steps that had not started were cancelled (the error step
    /// excepted), steps already running finish. Under <see cref="WorkflowFailurePolicy.Continue"/> once nothing of it runs
    /// any more: the steps that could not run (a step they wait for failed) were cancelled. Terminal.</summary>
    Failed = 2,
    /// <summary>Cancelled by hand: waiting steps were cancelled and running ones asked to stop. Terminal.</summary>
    Cancelled = 3,
}

/// <summary>Helpers over <see cref="WorkflowState"/>.</summary>
public static class WorkflowStates
{
    /// <summary>The lower-case name used in the HTTP API.</summary>
    public static string ToApiName(this WorkflowState state) => state switch
    {
        WorkflowState.Running => "running",
        WorkflowState.Succeeded => "succeeded",
        WorkflowState.Failed => "failed",
        WorkflowState.Cancelled => "cancelled",
        _ => throw new ArgumentOutOfRangeException(nameof(state), state, null),
    };

    /// <summary>Parses a lower-case API name; false when unknown.</summary>
    public static bool TryParseApiName(string? name, out WorkflowState state)
    {
        foreach (var candidate in Enum.GetValues<WorkflowState>())
        {
            if (string.Equals(candidate.ToApiName(), name, StringComparison.OrdinalIgnoreCase))
            {
                state = candidate;
                return true;
            }
        }
        state = default;
        return false;
    }
}

/// <summary>A step of a stored workflow: its id, task and the steps it runs after.</summary>
/// <param name="Id">Step id.</param>
/// <param name="TaskId">The task that runs it.</param>
/// <param name="After">Ids of the steps it runs after, in order.</param>
public sealed record WorkflowStepInfo(string Id, Guid TaskId, IReadOnlyList<string> After)
{
    /// <summary>What its failure does to the workflow.</summary>
    public WorkflowFailurePolicy OnFailure { get; init; }
    /// <summary>Whether it is the workflow's error step.</summary>
    public bool IsErrorStep { get; init; }
    /// <summary>When it is released.</summary>
    public WorkflowRunWhen RunWhen { get; init; }
}

/// <summary>A workflow as stored (its steps' states are their tasks').</summary>
public sealed record StoredWorkflow
{
    /// <summary>Workflow id.</summary>
    public required Guid Id { get; init; }
    /// <summary>Name, or null.</summary>
    public string? Name { get; init; }
    /// <summary>State.</summary>
    public required WorkflowState State { get; init; }
    /// <summary>When it was created.</summary>
    public required DateTimeOffset CreatedAt { get; init; }
    /// <summary>When it reached a terminal state.</summary>
    public DateTimeOffset? FinishedAt { get; init; }
    /// <summary>The step graph.</summary>
    public required IReadOnlyList<WorkflowStepInfo> Steps { get; init; }
}

/// <summary>A workflow's state and times, without its steps.</summary>
/// <param name="Id">Workflow id.</param>
/// <param name="Name">Name, or null.</param>
/// <param name="State">State.</param>
/// <param name="CreatedAt">When it was created.</param>
/// <param name="FinishedAt">When it reached a terminal state.</param>
public sealed record WorkflowSummary(Guid Id, string? Name, WorkflowState State, DateTimeOffset CreatedAt, DateTimeOffset? FinishedAt);

/// <summary>A filter and page of the workflow list.</summary>
public sealed record WorkflowQuery
{
    /// <summary>Only workflows in this state.</summary>
    public WorkflowState? State { get; init; }
    /// <summary>Only workflows with this name.</summary>
    public string? Name { get; init; }
    /// <summary>Opaque cursor from the previous page's <see cref="WorkflowPage.NextCursor"/>.</summary>
    public string? Cursor { get; init; }
    /// <summary>Page size, 1 to 1,000. Default 100.</summary>
    public int Limit { get; init; } = 100;
}

/// <summary>One page of workflows, newest first.</summary>
/// <param name="Items">The workflows.</param>
/// <param name="NextCursor">Cursor of the next page, or null at the end.</param>
public sealed record WorkflowPage(IReadOnlyList<StoredWorkflow> Items, string? NextCursor);

/// <summary>
/// Workflows (a sub-role of the queue and store roles): steps stored as tasks, those that wait for others in
/// <see cref="TaskState.Pending"/>. The contract every implementation keeps (docs/workflows.md, checked by the conformance
/// suite): the change that ends a step's task — a completion, a lease that ran out for the last time, a cancel — and what
/// it does to the workflow happen in one transaction or script. When a step succeeds, each step that runs after it and
/// whose other dependencies have all succeeded becomes queued; so a crash at any moment neither loses a step nor runs one
/// before its inputs, and the join of two steps that finish at once on two workers is exact. When a step ends dead,
/// cancelled or expired while the workflow runs: the error step, if pending, is queued; then under the step's policy
/// <see cref="WorkflowFailurePolicy.Stop"/> the workflow fails and its steps that have not started (pending, scheduled,
/// queued, retrying; the error step excepted) are cancelled, and under <see cref="WorkflowFailurePolicy.Continue"/> the
/// workflow goes on. A running workflow ends when none of its steps is scheduled, queued, running or retrying: its
/// pending steps (which can never run) are cancelled and it ends succeeded, or failed if a step failed.
/// </summary>
public interface IWorkflowStore
{
    /// <summary>Stores the workflow and its steps, all or none; steps without dependencies are ready at once.</summary>
    Task CreateWorkflowAsync(NewWorkflow workflow, CancellationToken cancellationToken);

    /// <summary>One workflow, or null when unknown.</summary>
    Task<StoredWorkflow?> GetWorkflowAsync(Guid workflowId, CancellationToken cancellationToken);

    /// <summary>A workflow's state and times without its step graph (read at each step's end while workflow events are
    /// watched), or null when unknown. The default reads the whole workflow; SQL and Redis stores read one row or hash.</summary>
    async Task<WorkflowSummary?> GetWorkflowSummaryAsync(Guid workflowId, CancellationToken cancellationToken) =>
        await GetWorkflowAsync(workflowId, cancellationToken).ConfigureAwait(false) is { } workflow
            ? new WorkflowSummary(workflow.Id, workflow.Name, workflow.State, workflow.CreatedAt, workflow.FinishedAt)
            : null;

    /// <summary>The tasks of a workflow's steps (any order); empty when unknown.</summary>
    Task<IReadOnlyList<TaskRecord>> GetWorkflowTasksAsync(Guid workflowId, CancellationToken cancellationToken);

    /// <summary>Workflows matching a filter, newest first, one page at a time.</summary>
    Task<WorkflowPage> ListWorkflowsAsync(WorkflowQuery query, CancellationToken cancellationToken);

    /// <summary>Cancels a running workflow: in one transaction or script, marks it cancelled, cancels its steps that have
    /// not started and asks its running ones to stop. False when it is unknown or not running.</summary>
    Task<bool> CancelWorkflowAsync(Guid workflowId, CancellationToken cancellationToken);

    /// <summary>Runs a failed or cancelled workflow again from its failed steps, in one transaction or script: it is
    /// running again; its steps that ended dead, cancelled or expired get a fresh set of attempts; its error step, if it
    /// ended, is pending again; then every other step that waits — pending, or released and not leased (scheduled,
    /// queued, retrying) — is counted again: the steps it runs after that have not succeeded (not ended, for one released
    /// when all ended); it waits in pending while that count is above 0 (a released step keeps its attempts, not its
    /// retry's wait), and a pending one at 0 is queued. Succeeded
    /// steps keep their results; leased (running) ones go on. False when it is unknown or not failed or
    /// cancelled.</summary>
    Task<bool> RetryWorkflowAsync(Guid workflowId, CancellationToken cancellationToken);

    /// <summary>Retention: deletes up to <paramref name="maxCount"/> workflows that ended (succeeded, failed or cancelled)
    /// before <paramref name="finishedBefore"/> and none of whose steps is unfinished (a step still running after a
    /// failure or a cancel keeps its workflow), each with its steps' tasks and its step graph, in one transaction or
    /// script. A running workflow is never deleted. Returns how many workflows were deleted.</summary>
    Task<int> PurgeFinishedWorkflowsAsync(DateTimeOffset finishedBefore, int maxCount, CancellationToken cancellationToken);
}

/// <summary>The step graph as backends store it: JSON, written and read here once for all of them.</summary>
public static class WorkflowStepsJson
{
    /// <summary>The steps as JSON text.</summary>
    public static string Write(IReadOnlyList<WorkflowStepInfo> steps) => JsonSerializer.Serialize(steps, ConveyorJson.Options);

    /// <summary>Reads what <see cref="Write"/> wrote.</summary>
    public static IReadOnlyList<WorkflowStepInfo> Read(string json) =>
        JsonSerializer.Deserialize<List<WorkflowStepInfo>>(json, ConveyorJson.Options) ?? [];
}
