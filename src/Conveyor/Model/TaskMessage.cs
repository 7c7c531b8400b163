namespace Conveyor;

/// <summary>
/// One enqueued execution of a task: what a backend stores and delivers.
/// </summary>
public sealed record TaskMessage
{
    /// <summary>Identifier, a UUIDv7 (time-ordered).</summary>
    public required Guid Id { get; init; }

    /// <summary>Task name, such as <c>flights.score</c>.</summary>
    public required string Task { get; init; }

    /// <summary>Arguments as raw JSON text; <c>null</c> when none.</summary>
    public string? Args { get; init; }

    /// <summary>Queue name. Default <c>default</c>.</summary>
    public string Queue { get; init; } = QueueNames.Default;

    /// <summary>Priority in [<see cref="Priorities.Min"/>, <see cref="Priorities.Max"/>]; higher runs first. Default 0.</summary>
    public int Priority { get; init; }

    /// <summary>Not before this time (ETA); <c>null</c> to run as soon as possible.</summary>
    public DateTimeOffset? NotBefore { get; init; }

    /// <summary>Expires, unstarted, at this time; <c>null</c> for never.</summary>
    public DateTimeOffset? ExpiresAt { get; init; }

    /// <summary>How many attempts in all, first included. Default 5.</summary>
    public int MaxAttempts { get; init; } = 5;

    /// <summary>Backoff between attempts.</summary>
    public RetryPolicy Retry { get; init; } = RetryPolicy.Default;

    /// <summary>Time limit of one attempt; <c>null</c> for none.</summary>
    public TimeSpan? Timeout { get; init; }

    /// <summary>Enqueueing twice with the same key returns the first task.</summary>
    public string? IdempotencyKey { get; init; }

    /// <summary>At most one task of this key is queued or running (and, with <see cref="UniqueFor"/>, finished within
    /// that window): an enqueue of a key held by a live task returns that task instead. Claimed at enqueue in the
    /// coordination role (<see cref="Backends.IUniqueKeyStore"/>); backends do not store it with the task.</summary>
    public string? UniqueKey { get; init; }

    /// <summary>How long after its task finishes a <see cref="UniqueKey"/> stays held; null or zero: released when it
    /// finishes.</summary>
    public TimeSpan? UniqueFor { get; init; }

    /// <summary>Free-form headers: trace context, parent and root ids.</summary>
    public IReadOnlyDictionary<string, string>? Headers { get; init; }

    /// <summary>When it was enqueued.</summary>
    public required DateTimeOffset CreatedAt { get; init; }

    /// <summary>The state it is stored in: <see cref="TaskState.Scheduled"/> when it has a future ETA, else queued.</summary>
    public TaskState InitialState(DateTimeOffset now) =>
        NotBefore is { } eta && eta > now ? TaskState.Scheduled : TaskState.Queued;
}

/// <summary>Queue-name rules.</summary>
public static class QueueNames
{
    /// <summary>The queue used when none is given.</summary>
    public const string Default = "default";

    /// <summary>Longest queue name, in characters.</summary>
    public const int MaxLength = 100;

    /// <summary>Letters, digits, <c>.</c>, <c>-</c> and <c>_</c>; 1 to 100 characters. No <c>:</c>, which separates a weight in worker settings (<c>emails:3</c>).</summary>
    public static bool IsValid(string? name)
    {
        if (string.IsNullOrEmpty(name) || name.Length > MaxLength)
        {
            return false;
        }
        foreach (var c in name)
        {
            if (!(char.IsAsciiLetterOrDigit(c) || c is '.' or '-' or '_'))
            {
                return false;
            }
        }
        return true;
    }
}

/// <summary>Priority bounds.</summary>
public static class Priorities
{
    /// <summary>Lowest priority.</summary>
    public const int Min = -100;

    /// <summary>Highest priority.</summary>
    public const int Max = 100;
}
