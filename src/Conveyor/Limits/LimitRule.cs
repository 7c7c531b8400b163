namespace Conveyor;

/// <summary>
/// One limit, bound from an entry of <c>Conveyor:Limits</c> (or added to <see cref="ConveyorOptions.Limits"/>): on the tasks
/// of one name (<see cref="Task"/>) or of one queue (<see cref="Queue"/>), a rate, a concurrency limit, or both, enforced
/// across every worker process on the backend (docs/limits.md).
/// </summary>
/// <remarks>A limit set here for a task overrides what its registration set (<see cref="TaskDefaults.RateLimit"/>,
/// <see cref="TaskDefaults.ConcurrencyLimit"/>, <see cref="TaskDefaults.ConcurrencyKeyPath"/>), one setting at a time:
/// configuration can loosen or tighten what the code chose. Every worker must be given the same limits.</remarks>
public sealed class LimitRule
{
    /// <summary>The task name the limit applies to; set this or <see cref="Queue"/>.</summary>
    public string? Task { get; set; }

    /// <summary>The queue the limit applies to (every task in it, counted together); set this or <see cref="Task"/>.</summary>
    public string? Queue { get; set; }

    /// <summary>Starts allowed, evenly spaced: <c>10/s</c>, <c>10/m</c>, <c>100/h</c> (<see cref="RateLimit"/>). Default none.</summary>
    public string? Rate { get; set; }

    /// <summary>Most tasks running at once across every worker, from 1. Default none.</summary>
    public int? Concurrency { get; set; }

    /// <summary>Applies <see cref="Concurrency"/> per value of this property of the task's arguments instead of to all its
    /// tasks together: <c>tenant</c>, or a path through objects, <c>headers.x-tenant</c>. Tasks whose arguments lack it
    /// share one more key. Default none.</summary>
    public string? ConcurrencyKey { get; set; }

    /// <summary>A limit on the tasks named <paramref name="task"/>.</summary>
    public static LimitRule ForTask(string task, string? rate = null, int? concurrency = null, string? concurrencyKey = null) =>
        new() { Task = task, Rate = rate, Concurrency = concurrency, ConcurrencyKey = concurrencyKey };

    /// <summary>A limit on the tasks of queue <paramref name="queue"/>, together.</summary>
    public static LimitRule ForQueue(string queue, string? rate = null, int? concurrency = null) =>
        new() { Queue = queue, Rate = rate, Concurrency = concurrency };
}
