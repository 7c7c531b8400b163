namespace Conveyor.AspNetCore;

/// <summary>Which workers count as present: the API's <c>/workers</c> and the CLI's <c>info</c> agree on it.</summary>
public static class WorkerListing
{
    /// <summary>How recent a heartbeat must be: three heartbeat intervals, or one lease if longer (after that a
    /// worker's tasks go to others anyway). Default max(3 × 10 s, 30 s) = 30 s.</summary>
    public static TimeSpan Window(WorkerOptions worker)
    {
        ArgumentNullException.ThrowIfNull(worker);
        var heartbeats = worker.HeartbeatInterval * 3;
        return heartbeats > worker.LeaseDuration ? heartbeats : worker.LeaseDuration;
    }
}
