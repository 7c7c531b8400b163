using Conveyor.Backends;

namespace Conveyor.AspNetCore;

/// <summary>Which workers are listed, and which count as alive: the API's <c>/workers</c> and the CLI's <c>info</c> agree on it.</summary>
public static class WorkerListing
{
    /// <summary>How long a worker that stopped heartbeating stays listed (as dead): one hour, or three leases if longer.</summary>
    public static TimeSpan Window(WorkerOptions worker)
    {
        ArgumentNullException.ThrowIfNull(worker);
        var leases = worker.LeaseDuration * 3;
        return leases > TimeSpan.FromHours(1) ? leases : TimeSpan.FromHours(1);
    }

    /// <summary>Whether <paramref name="info"/>'s last heartbeat is within two heartbeat intervals of <paramref name="now"/>:
    /// a worker that misses two beats is shown dead (its leases run out, and its tasks go to others, within a lease).</summary>
    public static bool IsAlive(WorkerInfo info, WorkerOptions worker, DateTimeOffset now)
    {
        ArgumentNullException.ThrowIfNull(info);
        ArgumentNullException.ThrowIfNull(worker);
        return info.HeartbeatAt >= now - (worker.HeartbeatInterval * 2);
    }

    /// <summary>The workers seen within <see cref="Window"/>, each marked alive or dead, alive ones first.</summary>
    public static async Task<IReadOnlyList<WorkerInfo>> ListAsync(ICoordinationBackend coordination, WorkerOptions worker, DateTimeOffset now, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(coordination);
        var workers = await coordination.ListWorkersAsync(now - Window(worker), cancellationToken).ConfigureAwait(false);
        return workers.Select(w => w with { Alive = IsAlive(w, worker, now) })
            .OrderByDescending(w => w.Alive).ThenBy(w => w.Id, StringComparer.Ordinal).ToList();
    }
}
