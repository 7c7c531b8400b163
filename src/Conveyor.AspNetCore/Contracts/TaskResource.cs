using System.Text.Json;
using System.Text.Json.Serialization;

namespace Conveyor.AspNetCore.Contracts;

/// <summary>A task as the HTTP API shows it: <c>GET /api/v1/tasks/{id}</c>, list items and enqueue answers.</summary>
public sealed record TaskResource
{
    /// <summary>Task id (UUIDv7).</summary>
    public required Guid Id { get; init; }
    /// <summary>Task name.</summary>
    public required string Task { get; init; }
    /// <summary>Queue name.</summary>
    public required string Queue { get; init; }
    /// <summary>State: scheduled, queued, running, succeeded, retrying, dead, cancelled or expired.</summary>
    [JsonConverter(typeof(ApiEnumConverter<TaskState>))]
    public required TaskState State { get; init; }
    /// <summary>Priority in [-100, 100]; higher runs first.</summary>
    public int Priority { get; init; }
    /// <summary>Arguments, as the JSON they were given in.</summary>
    public JsonElement? Args { get; init; }
    /// <summary>Result JSON once succeeded; null before and for tasks that return nothing.</summary>
    public JsonElement? Result { get; init; }
    /// <summary>Error of the last failed attempt.</summary>
    public TaskErrorResource? Error { get; init; }
    /// <summary>Errors of every failed attempt, oldest first.</summary>
    public IReadOnlyList<AttemptErrorResource> Errors { get; init; } = [];
    /// <summary>Attempts started so far.</summary>
    public int Attempts { get; init; }
    /// <summary>Attempts allowed in all.</summary>
    public int MaxAttempts { get; init; }
    /// <summary>How failed attempts are retried.</summary>
    public RetryResource? Retry { get; init; }
    /// <summary>Enqueue time.</summary>
    public DateTimeOffset CreatedAt { get; init; }
    /// <summary>When the last attempt started.</summary>
    public DateTimeOffset? StartedAt { get; init; }
    /// <summary>When it reached a terminal state.</summary>
    public DateTimeOffset? FinishedAt { get; init; }
    /// <summary>Not before this time (ETA, delay or next retry).</summary>
    public DateTimeOffset? NotBefore { get; init; }
    /// <summary>Expires, unstarted, at this time.</summary>
    public DateTimeOffset? ExpiresAt { get; init; }
    /// <summary>Idempotency key, if given.</summary>
    public string? IdempotencyKey { get; init; }
    /// <summary>Headers carried with the task.</summary>
    public IReadOnlyDictionary<string, string>? Headers { get; init; }
    /// <summary>Worker holding it while it runs.</summary>
    public string? WorkerId { get; init; }
    /// <summary>Whether a cancel was asked while it ran.</summary>
    public bool CancelRequested { get; init; }
    /// <summary>Every state change, oldest first.</summary>
    public IReadOnlyList<TransitionResource> Transitions { get; init; } = [];

    /// <summary>The resource of a stored task.</summary>
    public static TaskResource From(TaskRecord record)
    {
        ArgumentNullException.ThrowIfNull(record);
        return new TaskResource
        {
            Id = record.Id,
            Task = record.Task,
            Queue = record.Queue,
            State = record.State,
            Priority = record.Priority,
            Args = EmbeddedJson(record.Args),
            Result = EmbeddedJson(record.Result),
            Error = record.Error is { } error ? TaskErrorResource.From(error) : null,
            Errors = record.Errors.Select(e => new AttemptErrorResource(e.Attempt, e.At, TaskErrorResource.From(e.Error))).ToList(),
            Attempts = record.Attempts,
            MaxAttempts = record.MaxAttempts,
            Retry = RetryResource.From(record.Retry),
            CreatedAt = record.CreatedAt,
            StartedAt = record.StartedAt,
            FinishedAt = record.FinishedAt,
            NotBefore = record.NotBefore,
            ExpiresAt = record.ExpiresAt,
            IdempotencyKey = record.IdempotencyKey,
            Headers = record.Headers,
            WorkerId = record.WorkerId,
            CancelRequested = record.CancelRequested,
            Transitions = record.Transitions.Select(t => new TransitionResource(t.State, t.At)).ToList(),
        };
    }

    /// <summary>The resource of a task this request just created, as a GET right after it would show it,
    /// without reading it back from the store.</summary>
    public static TaskResource FromNew(TaskMessage message, TaskState state)
    {
        ArgumentNullException.ThrowIfNull(message);
        return new TaskResource
        {
            Id = message.Id,
            Task = message.Task,
            Queue = message.Queue,
            State = state,
            Priority = message.Priority,
            Args = EmbeddedJson(message.Args),
            MaxAttempts = message.MaxAttempts,
            Retry = RetryResource.From(message.Retry),
            CreatedAt = message.CreatedAt,
            NotBefore = message.NotBefore,
            ExpiresAt = message.ExpiresAt,
            IdempotencyKey = message.IdempotencyKey,
            Headers = message.Headers,
            Transitions = [new TransitionResource(state, message.CreatedAt)],
        };
    }

    // Arguments enqueued through the .NET client are not checked to be JSON; such text is shown as a JSON string
    // rather than failing the whole answer.
    internal static JsonElement? EmbeddedJson(string? json)
    {
        if (json is null)
        {
            return null;
        }
        try
        {
            using var document = JsonDocument.Parse(json);
            return document.RootElement.Clone();
        }
        catch (JsonException)
        {
            return JsonSerializer.SerializeToElement(json);
        }
    }
}

/// <summary>A task's retry policy, as the <c>retry</c> object of an enqueue body gives it.</summary>
/// <param name="Backoff"><c>exponential</c> or <c>fixed</c>.</param>
/// <param name="Delay">Delay after the first failure, ISO 8601 (<c>PT1S</c>).</param>
/// <param name="MaxDelay">Longest delay; equal to <paramref name="Delay"/> when fixed.</param>
/// <param name="Jitter">Relative spread of the delays, 0 to 1.</param>
/// <param name="RetryOn">When not empty, the only exceptions retried.</param>
/// <param name="NeverRetryOn">Exceptions never retried.</param>
public sealed record RetryResource(
    [property: JsonConverter(typeof(ApiEnumConverter<RetryBackoff>))] RetryBackoff Backoff,
    string Delay, string MaxDelay, double Jitter, IReadOnlyList<string> RetryOn, IReadOnlyList<string> NeverRetryOn)
{
    // Most tasks have the default policy: its resource is built once (the enqueue answer is on the hot path).
    private static readonly RetryResource DefaultResource = Build(RetryPolicy.Default);

    /// <summary>The resource of a policy.</summary>
    public static RetryResource From(RetryPolicy policy)
    {
        ArgumentNullException.ThrowIfNull(policy);
        return ReferenceEquals(policy, RetryPolicy.Default) || policy.Equals(RetryPolicy.Default) ? DefaultResource : Build(policy);
    }

    private static RetryResource Build(RetryPolicy policy) => new(policy.Backoff,
        System.Xml.XmlConvert.ToString(policy.BaseDelay), System.Xml.XmlConvert.ToString(policy.MaxDelay), policy.Jitter,
        policy.RetryOn, policy.NeverRetryOn);
}

/// <summary>An error raised by an attempt.</summary>
/// <param name="Type">Exception type, such as <c>System.TimeoutException</c>.</param>
/// <param name="Message">Exception message.</param>
/// <param name="Detail">Stack trace or other detail, at most 4,000 characters.</param>
public sealed record TaskErrorResource(string Type, string Message, string? Detail)
{
    /// <summary>The resource of a stored error.</summary>
    public static TaskErrorResource From(TaskError error)
    {
        ArgumentNullException.ThrowIfNull(error);
        return new(error.Type, error.Message, error.Detail);
    }
}

/// <summary>The error of one failed attempt.</summary>
/// <param name="Attempt">The 1-based attempt.</param>
/// <param name="At">When it failed.</param>
/// <param name="Error">What was raised.</param>
public sealed record AttemptErrorResource(int Attempt, DateTimeOffset At, TaskErrorResource Error);

/// <summary>One state change.</summary>
/// <param name="State">The state entered.</param>
/// <param name="At">When.</param>
public sealed record TransitionResource(
    [property: JsonConverter(typeof(ApiEnumConverter<TaskState>))] TaskState State,
    DateTimeOffset At);

/// <summary>A page of <c>GET /api/v1/tasks</c>, newest first.</summary>
/// <param name="Items">The tasks.</param>
/// <param name="NextCursor">Pass as <c>cursor</c> to get the next page; null on the last page.</param>
public sealed record TaskPageResource(IReadOnlyList<TaskResource> Items, string? NextCursor);

/// <summary>The answer to <c>POST /api/v1/tasks/retry</c>.</summary>
/// <param name="Retried">How many tasks were queued again.</param>
public sealed record BulkRetryResource(int Retried);

/// <summary>The answer to <c>POST /api/v1/tasks/purge</c>.</summary>
/// <param name="Purged">How many tasks were deleted.</param>
public sealed record BulkPurgeResource(int Purged);

/// <summary>The answer to <c>POST /api/v1/tasks/batch</c>.</summary>
/// <param name="Ids">One id per task, in the order given; an idempotency key that matched gives the existing task's id.</param>
public sealed record BatchResource(IReadOnlyList<Guid> Ids);
