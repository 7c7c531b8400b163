using System.Runtime.CompilerServices;

namespace Conveyor;

/// <summary>Options of one enqueue; anything unset takes the task's defaults.</summary>
public sealed record EnqueueOptions
{
    /// <summary>Queue name.</summary>
    public string? Queue { get; init; }
    /// <summary>Priority in [-100, 100]; higher first.</summary>
    public int? Priority { get; init; }
    /// <summary>Run no sooner than this long from now.</summary>
    public TimeSpan? Delay { get; init; }
    /// <summary>Run no sooner than this time. Exclusive with <see cref="Delay"/>.</summary>
    public DateTimeOffset? Eta { get; init; }
    /// <summary>Expire, unstarted, at this time.</summary>
    public DateTimeOffset? ExpiresAt { get; init; }
    /// <summary>Attempts in all, 1 to 1,000.</summary>
    public int? MaxAttempts { get; init; }
    /// <summary>Backoff between attempts and which exceptions are retried; replaces the task type's policy as a whole.
    /// Default: the task's (<see cref="TaskDefaults.Retry"/>), else <see cref="RetryPolicy.Default"/>.</summary>
    public RetryPolicy? Retry { get; init; }
    /// <summary>Time limit of one attempt.</summary>
    public TimeSpan? Timeout { get; init; }
    /// <summary>Enqueueing twice with the same key returns the first task. At most 200 characters.</summary>
    public string? IdempotencyKey { get; init; }
    /// <summary>At most one queued or running task per key (and, with <see cref="UniqueFor"/>, finished within that
    /// window): a duplicate enqueue returns the live task, with <see cref="EnqueueResult.MatchedUniqueKey"/> set. At most
    /// 200 characters.</summary>
    public string? UniqueKey { get; init; }
    /// <summary>How long the <see cref="UniqueKey"/> stays held after the task finishes. Default: released at once.</summary>
    public TimeSpan? UniqueFor { get; init; }
    /// <summary>Headers carried with the message.</summary>
    public IReadOnlyDictionary<string, string>? Headers { get; init; }
}

/// <summary>One task to enqueue in a batch.</summary>
/// <param name="Task">Task name.</param>
/// <param name="ArgsJson">Arguments as JSON text, or null.</param>
/// <param name="Options">Options, or null for the task's defaults.</param>
public sealed record TaskRequest(string Task, string? ArgsJson = null, EnqueueOptions? Options = null)
{
    /// <summary>Builds a request, serializing <paramref name="args"/> to JSON.</summary>
    public static TaskRequest Create<TArgs>(string task, TArgs args, EnqueueOptions? options = null) =>
        new(task, System.Text.Json.JsonSerializer.Serialize(args, ConveyorJson.Options), options);
}

/// <summary>Enqueues tasks and manages them. Registered by <c>AddConveyor</c>; thread-safe.</summary>
public interface ITaskClient
{
    /// <summary>Enqueues one task. Returns once the backend has stored it durably.</summary>
    Task<EnqueueResult> EnqueueAsync(TaskRequest request, CancellationToken cancellationToken = default);

    /// <summary>Enqueues many tasks, all or none, in as few round trips as the backend allows.</summary>
    Task<IReadOnlyList<EnqueueResult>> EnqueueManyAsync(IReadOnlyList<TaskRequest> requests, CancellationToken cancellationToken = default);

    /// <summary>Cancels a waiting task, or asks a running one to stop.</summary>
    Task<CancelOutcome> CancelAsync(Guid taskId, CancellationToken cancellationToken = default);

    /// <summary>Queues a dead, cancelled or expired task again.</summary>
    Task<RetryOutcome> RetryAsync(Guid taskId, CancellationToken cancellationToken = default);

    /// <summary>Queues again, with a fresh set of attempts, every task matching <paramref name="filter"/> (dead, cancelled
    /// or expired), in bounded steps (<see cref="ConveyorOptions.BulkBatchSize"/>); returns how many.</summary>
    /// <exception cref="TaskValidationException">The filter is invalid; its errors name the fields.</exception>
    Task<int> RetryManyAsync(TaskFilter filter, CancellationToken cancellationToken = default);

    /// <summary>Deletes every task matching <paramref name="filter"/> (dead, cancelled, expired or succeeded), with its
    /// history and idempotency key, in bounded steps (<see cref="ConveyorOptions.BulkBatchSize"/>); returns how many.</summary>
    /// <exception cref="TaskValidationException">The filter is invalid; its errors name the fields.</exception>
    Task<int> PurgeAsync(TaskFilter filter, CancellationToken cancellationToken = default);

    /// <summary>Reads a task's state, result and history.</summary>
    Task<TaskRecord?> GetAsync(Guid taskId, CancellationToken cancellationToken = default);
}

/// <summary>Shorthands over <see cref="ITaskClient"/>.</summary>
public static class TaskClientExtensions
{
    /// <summary>Enqueues one task with arguments serialized to JSON.</summary>
    public static Task<EnqueueResult> EnqueueAsync<TArgs>(this ITaskClient client, string task, TArgs args,
        EnqueueOptions? options = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(client);
        return client.EnqueueAsync(TaskRequest.Create(task, args, options), cancellationToken);
    }

    /// <summary>Enqueues one task without arguments.</summary>
    /// <remarks>Preferred in overload resolution, so that <c>EnqueueAsync("name", new EnqueueOptions { … })</c> binds here
    /// (options) rather than being ambiguous with <see cref="EnqueueAsync{TArgs}"/> (the options as arguments).</remarks>
    [OverloadResolutionPriority(1)]
    public static Task<EnqueueResult> EnqueueAsync(this ITaskClient client, string task,
        EnqueueOptions? options = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(client);
        return client.EnqueueAsync(new TaskRequest(task, null, options), cancellationToken);
    }
}
