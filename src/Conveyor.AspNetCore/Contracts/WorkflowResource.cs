using System.Text.Json;
using System.Text.Json.Serialization;
using Conveyor.Backends;
using Conveyor.Workflows;

namespace Conveyor.AspNetCore.Contracts;

/// <summary>A workflow as the HTTP API shows it: <c>GET /api/v1/workflows/{id}</c> (with its steps) and list items
/// (without).</summary>
public sealed record WorkflowResource
{
    /// <summary>Workflow id (UUIDv7).</summary>
    public required Guid Id { get; init; }
    /// <summary>Name, if given.</summary>
    public string? Name { get; init; }
    /// <summary>State: running, succeeded, failed or cancelled.</summary>
    [JsonConverter(typeof(ApiEnumConverter<WorkflowState>))]
    public required WorkflowState State { get; init; }
    /// <summary>When it was created.</summary>
    public DateTimeOffset CreatedAt { get; init; }
    /// <summary>When it reached a terminal state.</summary>
    public DateTimeOffset? FinishedAt { get; init; }
    /// <summary>The steps in the order given: a graph, each naming the steps it runs after.</summary>
    public IReadOnlyList<WorkflowStepResource> Steps { get; init; } = [];

    /// <summary>The resource of a workflow read with its steps' tasks.</summary>
    public static WorkflowResource From(WorkflowRecord record)
    {
        ArgumentNullException.ThrowIfNull(record);
        return new WorkflowResource
        {
            Id = record.Id,
            Name = record.Name,
            State = record.State,
            CreatedAt = record.CreatedAt,
            FinishedAt = record.FinishedAt,
            Steps = [.. record.Steps.Select(s => new WorkflowStepResource
            {
                Id = s.Id,
                After = s.After,
                TaskId = s.TaskId,
                OnFailure = PolicyName(s.OnFailure),
                RunWhen = RunWhenName(s.RunWhen),
                OnError = s.IsErrorStep ? true : null,
                Task = s.Task?.Task,
                State = s.Task?.State.ToApiName(),
                Attempts = s.Task?.Attempts ?? 0,
                CreatedAt = s.Task?.CreatedAt,
                StartedAt = s.Task?.StartedAt,
                FinishedAt = s.Task?.FinishedAt,
                Result = TaskResource.EmbeddedJson(s.Task?.Result),
                Error = s.Task?.Error is { } error ? TaskErrorResource.From(error) : null,
            })],
        };
    }

    private static string PolicyName(WorkflowFailurePolicy policy) => policy == WorkflowFailurePolicy.Continue ? "continue" : "stop";

    /// <summary>The API name of a step's release rule: <c>allSucceeded</c> or <c>allEnded</c>.</summary>
    internal static string RunWhenName(WorkflowRunWhen runWhen) => runWhen == WorkflowRunWhen.AllEnded ? "allEnded" : "allSucceeded";

    /// <summary>The resource of a listed workflow: the step graph without the steps' states.</summary>
    public static WorkflowResource From(StoredWorkflow workflow)
    {
        ArgumentNullException.ThrowIfNull(workflow);
        return new WorkflowResource
        {
            Id = workflow.Id,
            Name = workflow.Name,
            State = workflow.State,
            CreatedAt = workflow.CreatedAt,
            FinishedAt = workflow.FinishedAt,
            Steps = [.. workflow.Steps.Select(s => new WorkflowStepResource
            {
                Id = s.Id,
                After = s.After,
                TaskId = s.TaskId,
                OnFailure = PolicyName(s.OnFailure),
                RunWhen = RunWhenName(s.RunWhen),
                OnError = s.IsErrorStep ? true : null,
            })],
        };
    }
}

/// <summary>One step of a workflow and the state of its task.</summary>
public sealed record WorkflowStepResource
{
    /// <summary>Step id.</summary>
    public required string Id { get; init; }
    /// <summary>Ids of the steps it runs after.</summary>
    public IReadOnlyList<string> After { get; init; } = [];
    /// <summary>The task that runs it (<c>GET /api/v1/tasks/{taskId}</c> for its whole record).</summary>
    public required Guid TaskId { get; init; }
    /// <summary>What its failure does to the workflow: <c>stop</c> or <c>continue</c>.</summary>
    public string OnFailure { get; init; } = "stop";
    /// <summary>When it runs: <c>allSucceeded</c> (once every step it runs after succeeded) or <c>allEnded</c> (once each
    /// ended, whatever the outcome: a batch's <c>onComplete</c>).</summary>
    public string RunWhen { get; init; } = "allSucceeded";
    /// <summary>True for the workflow's error step (it runs when a step fails); absent otherwise.</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public bool? OnError { get; init; }
    /// <summary>Task name; null in lists and once retention deleted the task.</summary>
    public string? Task { get; init; }
    /// <summary>The task's state (pending while it waits for the steps it runs after); null in lists.</summary>
    public string? State { get; init; }
    /// <summary>Attempts started.</summary>
    public int Attempts { get; init; }
    /// <summary>When its task was stored.</summary>
    public DateTimeOffset? CreatedAt { get; init; }
    /// <summary>When its last attempt started.</summary>
    public DateTimeOffset? StartedAt { get; init; }
    /// <summary>When it reached a terminal state.</summary>
    public DateTimeOffset? FinishedAt { get; init; }
    /// <summary>Its result, once succeeded.</summary>
    public JsonElement? Result { get; init; }
    /// <summary>The error of its last failed attempt.</summary>
    public TaskErrorResource? Error { get; init; }
}

/// <summary>One page of workflows, newest first.</summary>
/// <param name="Items">The workflows.</param>
/// <param name="NextCursor">Cursor of the next page, or null at the end.</param>
public sealed record WorkflowPageResource(IReadOnlyList<WorkflowResource> Items, string? NextCursor);

/// <summary>The answer to a workflow's creation.</summary>
/// <param name="Id">The workflow's id.</param>
public sealed record WorkflowCreatedResource(Guid Id);
