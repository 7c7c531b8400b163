using System.Text.Json;
using System.Text.Json.Serialization;

namespace Conveyor.AspNetCore.Contracts;

/// <summary>
/// The body of <c>POST /api/v1/tasks</c>, as documented in the OpenAPI document. The API reads bodies itself
/// (<see cref="Requests.EnqueueRequestReader"/>) so that every problem names its field; this type only describes them.
/// </summary>
// Numbers are numbers: the reader refuses "5" for priority, so the document must not offer it.
[JsonNumberHandling(JsonNumberHandling.Strict)]
public sealed record EnqueueTaskBody
{
    /// <summary>Task name, such as <c>conveyor.noop</c>. Required.</summary>
    public required string Task { get; init; }
    /// <summary>Arguments: any JSON the task's argument type reads.</summary>
    public JsonElement? Args { get; init; }
    /// <summary>Queue name: 1 to 100 letters, digits, '.', '-', '_' or ':'. Default: the task's queue, else <c>default</c>.</summary>
    public string? Queue { get; init; }
    /// <summary>Priority in [-100, 100]; higher runs first. Default: the task's, else 0.</summary>
    public int? Priority { get; init; }
    /// <summary>Run no sooner than this long from now: an ISO 8601 duration such as <c>PT30S</c>, or a number of seconds.</summary>
    public string? Delay { get; init; }
    /// <summary>Run no sooner than this time, RFC 3339 with an offset (<c>2026-01-01T00:00:00Z</c>). Exclusive with <see cref="Delay"/>.</summary>
    public DateTimeOffset? Eta { get; init; }
    /// <summary>Expire, unstarted, at this time (RFC 3339).</summary>
    public DateTimeOffset? ExpiresAt { get; init; }
    /// <summary>Attempts in all, 1 to 1,000. Default: the task's, else 5.</summary>
    public int? MaxAttempts { get; init; }
    /// <summary>Time limit of one attempt: an ISO 8601 duration or a number of seconds.</summary>
    public string? Timeout { get; init; }
    /// <summary>Enqueueing again with the same key returns the first task (200) instead of a new one. 1 to 200 characters.</summary>
    public string? IdempotencyKey { get; init; }
    /// <summary>At most one queued or running task per key: while one holds it, an enqueue answers 200 with that task and
    /// <c>Conveyor-Deduplicated: uniqueKey</c>. 1 to 200 characters.</summary>
    public string? UniqueKey { get; init; }
    /// <summary>How long the unique key stays held after its task finishes (ISO 8601 or seconds). Default: released at once.</summary>
    public string? UniqueFor { get; init; }
    /// <summary>String headers carried with the task (trace context, parent ids). <c>conveyor-retry-on</c> and
    /// <c>conveyor-never-retry-on</c> are reserved.</summary>
    public IReadOnlyDictionary<string, string>? Headers { get; init; }
    /// <summary>How failed attempts are retried; fields left out keep the task's own policy.</summary>
    public RetryBody? Retry { get; init; }
}

/// <summary>The <c>retry</c> object of an enqueue body. Every field is optional: one left out keeps the task's own policy
/// (its registration, else exponential from 1 s to 10 min, ±20 %, every exception retried).</summary>
[JsonNumberHandling(JsonNumberHandling.Strict)]
public sealed record RetryBody
{
    /// <summary><c>exponential</c> (the delay doubles up to <see cref="MaxDelay"/>) or <c>fixed</c> (the same delay every time).
    /// Default: the task's; exponential when only <see cref="MaxDelay"/> is given.</summary>
    public string? Backoff { get; init; }
    /// <summary>Delay after the first failure (every failure's, when fixed): an ISO 8601 duration or seconds, 0 to 365 days.</summary>
    public string? Delay { get; init; }
    /// <summary>Longest delay of an exponential backoff, at least <see cref="Delay"/>; not given with a fixed one.</summary>
    public string? MaxDelay { get; init; }
    /// <summary>Relative spread of the delays, 0 to 1 (0.2: ±20 %).</summary>
    public double? Jitter { get; init; }
    /// <summary>When given and not empty, only these exceptions (or ones derived from them) are retried; others make the task
    /// dead at once. Full or short .NET type names, at most 50.</summary>
    public IReadOnlyList<string>? RetryOn { get; init; }
    /// <summary>These exceptions (or ones derived from them) are never retried; wins over <see cref="RetryOn"/>. At most 50.</summary>
    public IReadOnlyList<string>? NeverRetryOn { get; init; }
}

/// <summary>The body of <c>POST /api/v1/tasks/batch</c>: enqueued all or none.</summary>
/// <param name="Tasks">The tasks, each as for <c>POST /api/v1/tasks</c>.</param>
public sealed record EnqueueBatchBody(IReadOnlyList<EnqueueTaskBody> Tasks);
