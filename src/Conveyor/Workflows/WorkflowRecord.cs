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
    /// <summary>The task's state, times, result and error; null once retention deleted it.</summary>
    public TaskRecord? Task { get; init; }
    /// <summary>The task's state; null once retention deleted it.</summary>
    public TaskState? State => Task?.State;

    /// <summary>The result, deserialized; default when there is none.</summary>
    public T? Result<T>() => Task?.Result is { } json ? JsonSerializer.Deserialize<T>(json, ConveyorJson.Options) : default;
}

/// <summary>The result of a step that the reading step runs after.</summary>
/// <param name="StepId">The step's id.</param>
/// <param name="TaskId">Its task.</param>
/// <param name="ResultJson">Its result as JSON, or null.</param>
public sealed record StepInput(string StepId, Guid TaskId, string? ResultJson)
{
    /// <summary>The result, deserialized; default when there is none.</summary>
    public T? Result<T>() => ResultJson is { } json ? JsonSerializer.Deserialize<T>(json, ConveyorJson.Options) : default;
}
