namespace Conveyor;

/// <summary>This process's worker identity and live counters, read by the API, health checks and metrics.</summary>
public sealed class WorkerStatus
{
    private long _processed;
    private long _succeeded;
    private long _failed;
    private int _running;

    /// <summary>Unique id of this worker: host, process id and a random suffix.</summary>
    public string WorkerId { get; } = $"{Environment.MachineName}:{Environment.ProcessId}:{Guid.NewGuid().ToString("N")[..8]}";

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

    internal void Started() => Interlocked.Increment(ref _running);

    internal void Finished(bool succeeded)
    {
        Interlocked.Decrement(ref _running);
        Interlocked.Increment(ref _processed);
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
