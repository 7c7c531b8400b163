namespace Conveyor.AspNetCore.Contracts;

/// <summary>A queue with its depth per state: <c>GET /api/v1/queues</c>.</summary>
public sealed record QueueResource
{
    /// <summary>Queue name.</summary>
    public required string Name { get; init; }
    /// <summary>Workflow steps waiting for the steps they run after.</summary>
    public long Pending { get; init; }
    /// <summary>Tasks ready to run.</summary>
    public long Queued { get; init; }
    /// <summary>Tasks waiting for their time.</summary>
    public long Scheduled { get; init; }
    /// <summary>Tasks running.</summary>
    public long Running { get; init; }
    /// <summary>Tasks that succeeded (until retention removes them); a lower bound when <see cref="LowerBounds"/> names it.</summary>
    public long Succeeded { get; init; }
    /// <summary>Tasks waiting for their next attempt.</summary>
    public long Retrying { get; init; }
    /// <summary>Tasks out of attempts or failed permanently.</summary>
    public long Dead { get; init; }
    /// <summary>Tasks cancelled; a lower bound when <see cref="LowerBounds"/> names it.</summary>
    public long Cancelled { get; init; }
    /// <summary>Tasks expired before they started; a lower bound when <see cref="LowerBounds"/> names it.</summary>
    public long Expired { get; init; }
    /// <summary>Whether workers are kept from fetching from it.</summary>
    public bool Paused { get; init; }
    /// <summary>The states whose count is a lower bound, by API name (<c>["succeeded"]</c>): the store stopped counting
    /// their tasks at <c>ITaskStore.FinishedCountLimit</c> (50,000), so there are at least that many. Only finished
    /// states (succeeded, cancelled, expired) can be here; empty when every count is exact (docs/dashboard.md).</summary>
    public IReadOnlyList<string> LowerBounds { get; init; } = [];

    /// <summary>The resource of a queue's statistics.</summary>
    public static QueueResource From(QueueStats stats)
    {
        ArgumentNullException.ThrowIfNull(stats);
        return new QueueResource
        {
            Name = stats.Name,
            Pending = stats.Count(TaskState.Pending),
            Queued = stats.Count(TaskState.Queued),
            Scheduled = stats.Count(TaskState.Scheduled),
            Running = stats.Count(TaskState.Running),
            Succeeded = stats.Count(TaskState.Succeeded),
            Retrying = stats.Count(TaskState.Retrying),
            Dead = stats.Count(TaskState.Dead),
            Cancelled = stats.Count(TaskState.Cancelled),
            Expired = stats.Count(TaskState.Expired),
            Paused = stats.Paused,
            LowerBounds = [.. Enum.GetValues<TaskState>().Where(stats.IsLowerBound).Select(s => s.ToApiName())],
        };
    }
}
