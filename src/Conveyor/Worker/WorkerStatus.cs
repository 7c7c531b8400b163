using System.Collections.Concurrent;
using Conveyor.Backends;
using Microsoft.Extensions.Options;

namespace Conveyor;

/// <summary>A handler running now on this worker.</summary>
/// <param name="Lease">Its lease (task, token, attempt).</param>
/// <param name="StartedAt">When the handler started.</param>
public sealed record RunningTask(Lease Lease, DateTimeOffset StartedAt);

/// <summary>This process's worker identity and live counters, read by the API, health checks and metrics.</summary>
public sealed class WorkerStatus
{
    private readonly ConcurrentDictionary<Guid, RunningTask> _runningTasks = new();
    private long _processed;
    // Completed when _processed reaches _processedTarget (the recycler's max tasks per child), so it can stop the worker
    // at once rather than at its next look, by which time fast tasks would have gone far past the limit.
    private long _processedTarget = long.MaxValue;
    // Attempts started and not dropped: those finished (_processed) and those running. Reserved before a start, so that
    // no more attempts start than the target: a child recycled at 40 runs 40, however fast its tasks end.
    private long _committed;
    private readonly TaskCompletionSource _processedReached = new(TaskCreationOptions.RunContinuationsAsynchronously);
    // Completed when a reserved start is given back (Dropped), so that a fetch loop waiting at the target fetches for
    // the place; replaced each time.
    private volatile TaskCompletionSource _startGivenBack = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private long _succeeded;
    private long _failed;
    private int _running;

    /// <summary>A status with a generated id.</summary>
    public WorkerStatus()
        : this(null)
    {
    }

    /// <summary>A status with the id set in <see cref="WorkerOptions.Id"/>, or a generated one.</summary>
    [Microsoft.Extensions.DependencyInjection.ActivatorUtilitiesConstructor]
    public WorkerStatus(IOptions<ConveyorOptions>? options) =>
        WorkerId = options?.Value.Worker.Id is { Length: > 0 } id ? id : NewId();

    /// <summary>Unique id of this worker: by default host, process id and a random suffix; a supervisor names its
    /// children (<see cref="WorkerOptions.Id"/>) so that it can hand back their leases when they exit.</summary>
    public string WorkerId { get; }

    /// <summary>A new worker id: host, process id and a random suffix.</summary>
    public static string NewId() => $"{Environment.MachineName}:{Environment.ProcessId}:{Guid.NewGuid().ToString("N")[..8]}";

    /// <summary>The handlers running now, with their leases and start times.</summary>
    public IReadOnlyCollection<RunningTask> RunningTasks => _runningTasks.Values.ToArray();

    /// <summary>Set when the worker drains to be recycled (<see cref="WorkerRecycler"/>): a supervised child's exit code
    /// says so once its leases are handed back (<see cref="WorkerExitCodes.Recycled"/>).</summary>
    internal bool Recycling { get; set; }

    /// <summary>Whether the worker loop is running.</summary>
    public bool IsRunning { get; internal set; }

    /// <summary>When the worker started.</summary>
    public DateTimeOffset StartedAt { get; internal set; }

    /// <summary>Handlers running now.</summary>
    public int Running => Volatile.Read(ref _running);

    /// <summary>Attempts finished since start.</summary>
    public long Processed => Interlocked.Read(ref _processed);

    /// <summary>Attempts that succeeded since start.</summary>
    public long Succeeded => Interlocked.Read(ref _succeeded);

    /// <summary>Attempts that failed since start.</summary>
    public long Failed => Interlocked.Read(ref _failed);

    /// <summary>Whether the backend answered the worker's last call.</summary>
    public bool BackendReachable { get; internal set; } = true;

    /// <summary>Reserves an attempt's start: false once the started attempts (finished, running) reach the recycler's
    /// target, when the lease is to go back unstarted instead.</summary>
    internal bool TryStart()
    {
        // Compare and swap, never above the target even for a moment: a fetch loop waiting at the target reads the count
        // (StartsLeft), and an add taken back after a refusal would free a place no drop announces.
        var target = Volatile.Read(ref _processedTarget);
        var committed = Interlocked.Read(ref _committed);
        while (true)
        {
            if (committed >= target)
            {
                return false;
            }
            var seen = Interlocked.CompareExchange(ref _committed, committed + 1, committed);
            if (seen == committed)
            {
                break;
            }
            committed = seen;
        }
        Interlocked.Increment(ref _running);
        return true;
    }

    /// <summary>A lease given up without an outcome (lost while it waited or ran): it counts toward no target.</summary>
    internal void Dropped()
    {
        Interlocked.Decrement(ref _committed);
        Interlocked.Decrement(ref _running);
        Interlocked.Exchange(ref _startGivenBack, new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)).TrySetResult();
    }

    /// <summary>Completed while an attempt may still start (<see cref="TryStart"/>); at the recycler's target, completes
    /// once a reserved start is given back (<see cref="Dropped"/>), when one may start again.</summary>
    internal Task StartsLeft()
    {
        // Taken before the count is read: a start given back in between completes it.
        var givenBack = _startGivenBack.Task;
        return Interlocked.Read(ref _committed) < Volatile.Read(ref _processedTarget) ? Task.CompletedTask : givenBack;
    }

    internal void HandlerStarted(Lease lease, DateTimeOffset at) => _runningTasks[lease.Message.Id] = new RunningTask(lease, at);

    internal void HandlerEnded(Lease lease) => _runningTasks.TryRemove(lease.Message.Id, out _);

    private readonly TaskCompletionSource _fetchingStopped = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>Completes when the worker's fetch loops have ended (its drain begins): from then on, leases handed back
    /// behind its back are not fetched again by it.</summary>
    internal Task FetchingStopped => _fetchingStopped.Task;

    internal void StoppedFetching() => _fetchingStopped.TrySetResult();

    /// <summary>No attempt starts past <paramref name="count"/> (<see cref="TryStart"/>): set by the worker before its
    /// first, so that fast tasks cannot run past the count before the recycler is there to watch it.</summary>
    internal void LimitStarts(long count) => Volatile.Write(ref _processedTarget, count);

    /// <summary>Completes once <paramref name="count"/> attempts have finished (one target per status: the recycler's).</summary>
    internal Task ProcessedReachedAsync(long count)
    {
        LimitStarts(count);
        if (Processed >= count)
        {
            _processedReached.TrySetResult();
        }
        return _processedReached.Task;
    }

    internal void Finished(bool succeeded)
    {
        Interlocked.Decrement(ref _running);
        if (Interlocked.Increment(ref _processed) == Volatile.Read(ref _processedTarget))
        {
            _processedReached.TrySetResult();
        }
        if (succeeded)
        {
            Interlocked.Increment(ref _succeeded);
        }
        else
        {
            Interlocked.Increment(ref _failed);
        }
    }
}
