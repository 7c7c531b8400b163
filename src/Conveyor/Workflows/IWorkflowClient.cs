using Conveyor.Backends;

namespace Conveyor.Workflows;

/// <summary>Starts, reads and cancels workflows. Registered by <c>AddConveyor</c>; thread-safe.</summary>
public interface IWorkflowClient
{
    /// <summary>Validates and stores a workflow, all or nothing; its first steps are ready at once. Returns once stored.</summary>
    /// <exception cref="TaskValidationException">The workflow is invalid (a cycle, an unknown step in <c>after</c>, a
    /// duplicate id, too many steps, a bad step); its errors name the steps. Nothing was stored.</exception>
    /// <exception cref="NotSupportedException">The backend does not store workflows (<see cref="IConveyorBackend.Workflows"/>).</exception>
    Task<WorkflowHandle> StartAsync(WorkflowDefinition definition, CancellationToken cancellationToken = default);

    /// <summary>A workflow with each step's task, or null when unknown.</summary>
    Task<WorkflowRecord?> GetAsync(Guid workflowId, CancellationToken cancellationToken = default);

    /// <summary>Workflows matching a filter, newest first, one page at a time (steps' tasks not read).</summary>
    Task<WorkflowPage> ListAsync(WorkflowQuery query, CancellationToken cancellationToken = default);

    /// <summary>Cancels a running workflow: steps that have not started never will, running ones get their token
    /// cancelled. False when it is unknown or already finished.</summary>
    Task<bool> CancelAsync(Guid workflowId, CancellationToken cancellationToken = default);

    /// <summary>Runs a failed or cancelled workflow again from its failed steps: those that ended dead, cancelled or
    /// expired, with the steps after them, wait and run again with fresh attempts; succeeded steps keep their results.
    /// False when it is unknown, running or succeeded.</summary>
    Task<bool> RetryAsync(Guid workflowId, CancellationToken cancellationToken = default);

    /// <summary>The results of the steps that the step running in <paramref name="context"/> runs after, in its
    /// <c>after</c> order (a chain step: its predecessor's; a chord's callback: its group's). Read from the store, where
    /// each result is kept once with its task. Empty for a task that is not a step or has no dependencies. A step released
    /// when all ended (<see cref="WorkflowRunWhen.AllEnded"/>, a batch's <c>onComplete</c>) reads each one's outcome:
    /// <see cref="StepInput.State"/>, and the result of those that succeeded or the error of those that ended dead or
    /// expired.</summary>
    Task<IReadOnlyList<StepInput>> GetInputsAsync(TaskContext context, CancellationToken cancellationToken = default);

    /// <summary>For the workflow's error step (<see cref="WorkflowDefinition.OnError"/>), or any step: the steps of its
    /// workflow that failed so far, with their errors — those that ended dead or expired, then those cancelled other than
    /// by the workflow's own failure — in the order they finished. Empty for a task that is not a step.</summary>
    Task<IReadOnlyList<StepFailure>> GetFailuresAsync(TaskContext context, CancellationToken cancellationToken = default);
}

/// <summary>A started workflow.</summary>
public sealed class WorkflowHandle
{
    private static readonly TimeSpan FirstPoll = TimeSpan.FromMilliseconds(20);
    private static readonly TimeSpan LongestPoll = TimeSpan.FromSeconds(1);
    private readonly WorkflowClient _client;

    internal WorkflowHandle(Guid id, WorkflowClient client)
    {
        Id = id;
        _client = client;
    }

    /// <summary>The workflow's id.</summary>
    public Guid Id { get; }

    /// <summary>Waits until the workflow succeeds, fails or is cancelled (and its error step, if it runs, and its steps
    /// released when all ended, such as a batch's <c>onComplete</c>, have ended), and
    /// returns it with every step's result.
    /// Reads its state (one row or hash, not its steps) from the store, first after 20 ms, then twice as long each time up
    /// to 1 s; then its steps once.</summary>
    /// <exception cref="InvalidOperationException">The workflow is no longer stored.</exception>
    public async Task<WorkflowRecord> WaitAsync(CancellationToken cancellationToken = default)
    {
        var delay = FirstPoll;
        while (true)
        {
            var state = await _client.GetStateAsync(Id, cancellationToken).ConfigureAwait(false)
                ?? throw new InvalidOperationException($"Workflow {Id} is not stored (deleted?).");
            if (state != WorkflowState.Running)
            {
                var record = await _client.GetAsync(Id, cancellationToken).ConfigureAwait(false)
                    ?? throw new InvalidOperationException($"Workflow {Id} is not stored (deleted?).");
                // A workflow that stopped on a failure has failed at once; its error step still runs, and its steps
                // released when all ended (a batch's onComplete) wait for the running ones and then run: wait for them too.
                if (!record.Steps.Any(s => (s.IsErrorStep && s.State is TaskState.Queued or TaskState.Running or TaskState.Retrying or TaskState.Scheduled)
                    || (s.RunWhen == WorkflowRunWhen.AllEnded && record.State != WorkflowState.Cancelled
                        && s.State is TaskState.Pending or TaskState.Queued or TaskState.Running or TaskState.Retrying or TaskState.Scheduled)))
                {
                    return record;
                }
            }
            await Task.Delay(delay, cancellationToken).ConfigureAwait(false);
            delay = TimeSpan.FromTicks(Math.Min(delay.Ticks * 2, LongestPoll.Ticks));
        }
    }

    /// <summary>Waits as <see cref="WaitAsync(CancellationToken)"/> does and returns the result of step
    /// <paramref name="stepId"/> (a chord's callback: <see cref="Workflow.ChordCallbackId"/>).</summary>
    /// <exception cref="WorkflowFailedException">The workflow failed or was cancelled.</exception>
    public async Task<T?> WaitAsync<T>(string stepId, CancellationToken cancellationToken = default)
    {
        var record = await WaitAsync(cancellationToken).ConfigureAwait(false);
        if (record.State != WorkflowState.Succeeded)
        {
            throw new WorkflowFailedException(record);
        }
        return record.Result<T>(stepId);
    }

    /// <summary>Waits as <see cref="WaitAsync(CancellationToken)"/> does and returns the results of the members of a
    /// group, chord or batch (<see cref="Workflow.Group"/>, <see cref="Workflow.Chord"/>, <see cref="Workflow.Batch"/>:
    /// steps <c>0</c>, <c>1</c>, …), in order.</summary>
    /// <exception cref="WorkflowFailedException">The workflow failed or was cancelled (its <see cref="WorkflowFailedException.Workflow"/>
    /// has the results of the members that succeeded).</exception>
    public async Task<IReadOnlyList<T?>> WaitForMembersAsync<T>(CancellationToken cancellationToken = default)
    {
        var record = await WaitAsync(cancellationToken).ConfigureAwait(false);
        if (record.State != WorkflowState.Succeeded)
        {
            throw new WorkflowFailedException(record);
        }
        var ids = record.Steps.Select(s => s.Id).ToHashSet(StringComparer.Ordinal);
        var results = new List<T?>();
        for (var i = 0; ids.Contains(Workflow.MemberId(i)); i++)
        {
            results.Add(record.Result<T>(Workflow.MemberId(i)));
        }
        return results;
    }
}

/// <summary>Thrown by <see cref="WorkflowHandle.WaitAsync{T}"/> when the workflow did not succeed.</summary>
public sealed class WorkflowFailedException : Exception
{
    /// <summary>Creates the exception for a workflow that ended without success.</summary>
    public WorkflowFailedException(WorkflowRecord workflow)
        : base(Describe(workflow)) => Workflow = workflow;

    /// <summary>Creates the exception.</summary>
    public WorkflowFailedException() { }

    /// <summary>Creates the exception with a message.</summary>
    public WorkflowFailedException(string message) : base(message) { }

    /// <summary>Creates the exception with a message and cause.</summary>
    public WorkflowFailedException(string message, Exception innerException) : base(message, innerException) { }

    /// <summary>The workflow as it ended.</summary>
    public WorkflowRecord? Workflow { get; }

    private static string Describe(WorkflowRecord workflow)
    {
        ArgumentNullException.ThrowIfNull(workflow);
        var failed = workflow.Steps.FirstOrDefault(s => s.State is TaskState.Dead or TaskState.Expired)
            ?? workflow.Steps.FirstOrDefault(s => s.State == TaskState.Cancelled);
        return failed is null
            ? $"Workflow {workflow.Id} is {workflow.State.ToApiName()}."
            : $"Workflow {workflow.Id} is {workflow.State.ToApiName()}: step '{failed.Id}' is {failed.State?.ToApiName()}{(failed.Task?.Error is { } e ? $" ({e.Type}: {e.Message})" : "")}.";
    }
}
