namespace Conveyor;

/// <summary>An error raised by one attempt of a task.</summary>
/// <param name="Type">Exception type, such as <c>System.TimeoutException</c>.</param>
/// <param name="Message">Exception message.</param>
/// <param name="Detail">Stack trace or other detail; truncated to 4,000 characters.</param>
public sealed record TaskError(string Type, string Message, string? Detail = null)
{
    /// <summary>Longest <see cref="Detail"/> kept, in characters.</summary>
    public const int MaxDetailLength = 4000;

    /// <summary>Builds an error from an exception.</summary>
    public static TaskError From(Exception exception)
    {
        ArgumentNullException.ThrowIfNull(exception);
        var detail = exception.ToString();
        if (detail.Length > MaxDetailLength)
        {
            detail = detail[..MaxDetailLength];
        }
        return new TaskError(exception.GetType().FullName ?? exception.GetType().Name, exception.Message, detail);
    }
}

/// <summary>One recorded state change.</summary>
/// <param name="State">The state entered.</param>
/// <param name="At">When.</param>
public readonly record struct TaskTransition(TaskState State, DateTimeOffset At);

/// <summary>An error of one attempt, as recorded in a task's history.</summary>
/// <param name="Attempt">The 1-based attempt that failed.</param>
/// <param name="At">When it failed.</param>
/// <param name="Error">What was raised.</param>
public sealed record AttemptError(int Attempt, DateTimeOffset At, TaskError Error);

/// <summary>A task as the store knows it: message, state, result and history.</summary>
public sealed record TaskRecord
{
    /// <summary>Task id.</summary>
    public required Guid Id { get; init; }
    /// <summary>Task name.</summary>
    public required string Task { get; init; }
    /// <summary>Queue name.</summary>
    public required string Queue { get; init; }
    /// <summary>Current state.</summary>
    public required TaskState State { get; init; }
    /// <summary>Priority; higher first.</summary>
    public int Priority { get; init; }
    /// <summary>Arguments as JSON text.</summary>
    public string? Args { get; init; }
    /// <summary>Result as JSON text, once succeeded.</summary>
    public string? Result { get; init; }
    /// <summary>Last error, if any attempt failed.</summary>
    public TaskError? Error { get; init; }
    /// <summary>Attempts started so far.</summary>
    public int Attempts { get; init; }
    /// <summary>Attempts allowed in all.</summary>
    public int MaxAttempts { get; init; }
    /// <summary>The retry policy it was enqueued with: backoff and the exceptions retried.</summary>
    public RetryPolicy Retry { get; init; } = RetryPolicy.Default;
    /// <summary>Enqueue time.</summary>
    public DateTimeOffset CreatedAt { get; init; }
    /// <summary>Not-before time, if any.</summary>
    public DateTimeOffset? NotBefore { get; init; }
    /// <summary>Expiry, if any.</summary>
    public DateTimeOffset? ExpiresAt { get; init; }
    /// <summary>When the last attempt started.</summary>
    public DateTimeOffset? StartedAt { get; init; }
    /// <summary>When it reached a terminal state.</summary>
    public DateTimeOffset? FinishedAt { get; init; }
    /// <summary>Idempotency key, if given.</summary>
    public string? IdempotencyKey { get; init; }
    /// <summary>Headers.</summary>
    public IReadOnlyDictionary<string, string>? Headers { get; init; }
    /// <summary>The worker of the last attempt: the one holding the lease while it runs, kept once it finished.</summary>
    public string? WorkerId { get; init; }
    /// <summary>Whether a cancel was asked while it ran.</summary>
    public bool CancelRequested { get; init; }
    /// <summary>Every state change with its time, oldest first.</summary>
    public IReadOnlyList<TaskTransition> Transitions { get; init; } = [];
    /// <summary>Errors of failed attempts, oldest first.</summary>
    public IReadOnlyList<AttemptError> Errors { get; init; } = [];
}

/// <summary>Depth of one queue per state.</summary>
public sealed record QueueStats
{
    /// <summary>Queue name.</summary>
    public required string Name { get; init; }
    /// <summary>Whether fetching from it is paused.</summary>
    public bool Paused { get; init; }
    /// <summary>Tasks per state; states with none may be absent.</summary>
    public required IReadOnlyDictionary<TaskState, long> Counts { get; init; }

    /// <summary>The states whose count is a lower bound: the store stopped counting their tasks at a limit
    /// (<see cref="Backends.ITaskStore.GetQueuesAsync(int, CancellationToken)"/>), so there are at least that many.
    /// Only finished states (succeeded, cancelled, expired) can be here; empty when every count is exact.</summary>
    public IReadOnlyCollection<TaskState> LowerBounds { get; init; } = [];

    /// <summary>Count in one state, 0 when absent.</summary>
    public long Count(TaskState state) => Counts.TryGetValue(state, out var n) ? n : 0;

    /// <summary>Whether the count of <paramref name="state"/> is a lower bound (<see cref="LowerBounds"/>).</summary>
    public bool IsLowerBound(TaskState state) => LowerBounds.Contains(state);
}

/// <summary>A worker as last reported by its heartbeat.</summary>
public sealed record WorkerInfo
{
    /// <summary>Unique worker id.</summary>
    public required string Id { get; init; }
    /// <summary>Host name.</summary>
    public required string Host { get; init; }
    /// <summary>Process id.</summary>
    public int ProcessId { get; init; }
    /// <summary>Queues it consumes.</summary>
    public IReadOnlyList<string> Queues { get; init; } = [];
    /// <summary>Concurrency limit.</summary>
    public int Concurrency { get; init; }
    /// <summary>Tasks running now.</summary>
    public int Running { get; init; }
    /// <summary>Tasks finished since start.</summary>
    public long Processed { get; init; }
    /// <summary>Tasks that failed an attempt since start.</summary>
    public long Failed { get; init; }
    /// <summary>Start time.</summary>
    public DateTimeOffset StartedAt { get; init; }
    /// <summary>Last heartbeat.</summary>
    public DateTimeOffset HeartbeatAt { get; init; }
    /// <summary>Conveyor's version in the worker process.</summary>
    public string? Version { get; init; }
    /// <summary>The task names it has handlers for.</summary>
    public IReadOnlyList<string> Tasks { get; init; } = [];
    /// <summary>The JSON schema of the arguments of each task in <see cref="Tasks"/> that has one
    /// (<see cref="ArgsSchema"/>; bounded by <see cref="ArgsSchema.MaxSchemaBytes"/> each and
    /// <see cref="ArgsSchema.MaxTotalBytes"/> in all): a server without the handler checks arguments against it.
    /// Null from workers older than this field.</summary>
    public IReadOnlyDictionary<string, System.Text.Json.JsonElement>? ArgsSchemas { get; init; }
    /// <summary>The handlers running at its last heartbeat.</summary>
    public IReadOnlyList<WorkerTask> RunningTasks { get; init; } = [];
    /// <summary>Resident memory of its process at its last heartbeat, in bytes.</summary>
    public long MemoryBytes { get; init; }
    /// <summary>Whether its heartbeat is recent (within two heartbeat intervals): set by listings, not stored.</summary>
    public bool? Alive { get; init; }
}

/// <summary>A task running on a worker.</summary>
/// <param name="Id">Task id.</param>
/// <param name="Task">Task name.</param>
/// <param name="Attempt">The attempt running.</param>
/// <param name="StartedAt">When its handler started.</param>
public sealed record WorkerTask(Guid Id, string Task, int Attempt, DateTimeOffset StartedAt);
