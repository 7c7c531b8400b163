using System.Text.Json;
using Conveyor.Backends;

namespace Conveyor.Workflows;

/// <summary>A workflow and the state of each of its steps.</summary>
public sealed record WorkflowRecord
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
    /// <summary>The steps, in the order they were given.</summary>
    public required IReadOnlyList<WorkflowStepRecord> Steps { get; init; }

    /// <summary>Whether nothing further happens to it.</summary>
    public bool IsFinished => State != WorkflowState.Running;

    /// <summary>The step with this id.</summary>
    /// <exception cref="KeyNotFoundException">No step has this id.</exception>
    public WorkflowStepRecord Step(string id) =>
        Steps.FirstOrDefault(s => s.Id == id) ?? throw new KeyNotFoundException($"The workflow has no step '{id}'.");

    /// <summary>The steps that failed: dead or expired, then cancelled other than by the workflow's own failure (a
    /// cancelled step whose task ran, or was cancelled before any other step failed), each group in the order they
    /// finished; the error step's own failure last.</summary>
    public static IReadOnlyList<StepFailure> Failures(WorkflowRecord workflow)
    {
        ArgumentNullException.ThrowIfNull(workflow);
        var ended = workflow.Steps.Where(s => s.Task is { State: TaskState.Dead or TaskState.Expired or TaskState.Cancelled }).ToList();
        var firstFailure = ended.Where(s => s.State is TaskState.Dead or TaskState.Expired).Select(s => s.Task!.FinishedAt).Min();
        static StepFailure Of(WorkflowStepRecord s) => new(s.Id, s.TaskId, s.Task!.State, s.Task.Error, s.Task.FinishedAt);
        return [.. ended.Where(s => s.State is TaskState.Dead or TaskState.Expired).OrderBy(s => s.IsErrorStep).ThenBy(s => s.Task!.FinishedAt).Select(Of),
            .. ended.Where(s => s.State == TaskState.Cancelled && (s.Task!.StartedAt is not null || firstFailure is null || s.Task.FinishedAt < firstFailure))
                .OrderBy(s => s.IsErrorStep).ThenBy(s => s.Task!.FinishedAt).Select(Of)];
    }

    /// <summary>The result of step <paramref name="id"/>, deserialized; default when it has none.</summary>
    public T? Result<T>(string id) => Step(id).Result<T>();

    internal static WorkflowRecord From(StoredWorkflow workflow, IReadOnlyList<TaskRecord> tasks)
    {
        var byId = tasks.ToDictionary(t => t.Id);
        return new WorkflowRecord
        {
            Id = workflow.Id,
            Name = workflow.Name,
            State = workflow.State,
            CreatedAt = workflow.CreatedAt,
            FinishedAt = workflow.FinishedAt,
            Steps = [.. workflow.Steps.Select(s => new WorkflowStepRecord
            {
                Id = s.Id,
                After = s.After,
                TaskId = s.TaskId,
                OnFailure = s.OnFailure,
                IsErrorStep = s.IsErrorStep,
                RunWhen = s.RunWhen,
                // A step whose task retention deleted keeps its place, with no state of its own.
                Task = byId.GetValueOrDefault(s.TaskId),
            })],
        };
    }
}

/// <summary>One step of a workflow and its task.</summary>
public sealed record WorkflowStepRecord
{
    /// <summary>Step id.</summary>
    public required string Id { get; init; }
    /// <summary>Ids of the steps it runs after.</summary>
    public required IReadOnlyList<string> After { get; init; }
    /// <summary>The task that runs it.</summary>
    public required Guid TaskId { get; init; }
    /// <summary>What its failure does to the workflow.</summary>
    public WorkflowFailurePolicy OnFailure { get; init; }
    /// <summary>Whether it is the workflow's error step (<see cref="WorkflowDefinition.OnError"/>).</summary>
    public bool IsErrorStep { get; init; }
    /// <summary>When it is released (<see cref="WorkflowRunWhen.AllEnded"/>: a batch's <c>onComplete</c>).</summary>
    public WorkflowRunWhen RunWhen { get; init; }
    /// <summary>The task's state, times, result and error; null once retention deleted it.</summary>
    public TaskRecord? Task { get; init; }
    /// <summary>The task's state; null once retention deleted it.</summary>
    public TaskState? State => Task?.State;

    /// <summary>The result, deserialized; default when there is none.</summary>
    public T? Result<T>() => Task?.Result is { } json ? JsonSerializer.Deserialize<T>(json, ConveyorJson.Options) : default;
}

/// <summary>The outcome of a step that the reading step runs after: for a step released when all succeeded, its result;
/// for one released when all ended (<see cref="WorkflowRunWhen.AllEnded"/>, a batch's <c>onComplete</c>), its state and
/// its result (succeeded) or error (dead, expired; none when cancelled).</summary>
/// <param name="StepId">The step's id.</param>
/// <param name="TaskId">Its task.</param>
/// <param name="ResultJson">Its result as JSON, or null (also when it did not succeed).</param>
public sealed record StepInput(string StepId, Guid TaskId, string? ResultJson)
{
    /// <summary>Its task's state: <see cref="TaskState.Succeeded"/>, or <see cref="TaskState.Dead"/>,
    /// <see cref="TaskState.Expired"/> or <see cref="TaskState.Cancelled"/> for a failed one; null once task retention
    /// deleted it.</summary>
    public TaskState? State { get; init; }

    /// <summary>Its last error (dead or expired), or null.</summary>
    public TaskError? Error { get; init; }

    /// <summary>Whether it succeeded.</summary>
    public bool Succeeded => State == TaskState.Succeeded;

    /// <summary>The result, deserialized; default when there is none.</summary>
    public T? Result<T>() => ResultJson is { } json ? JsonSerializer.Deserialize<T>(json, ConveyorJson.Options) : default;
}

/// <summary>A step that failed, as its workflow's error step reads it (<see cref="IWorkflowClient.GetFailuresAsync"/>).</summary>
/// <param name="StepId">The step's id.</param>
/// <param name="TaskId">Its task.</param>
/// <param name="State">How it ended: dead, expired or cancelled.</param>
/// <param name="Error">Its last error, or null (a cancel).</param>
/// <param name="FinishedAt">When it ended.</param>
public sealed record StepFailure(string StepId, Guid TaskId, TaskState State, TaskError? Error, DateTimeOffset? FinishedAt);
