using Conveyor.Backends;
using Microsoft.Extensions.Logging;

namespace Conveyor;

/// <summary>
/// Hands back what a gone worker held: ends every lease it holds (<see cref="IQueueBackend.AbandonLeasesAsync"/>: tasks it
/// had not started are ready again unspent, tasks it ran are interrupted attempts), frees its concurrency slots, and
/// announces the tasks this ended for good (<see cref="LeaseEndEvents.AnnounceAsync"/>), whose events no worker raises.
/// A supervisor does it for a child that exited without confirming it did so itself
/// (<see cref="WorkerExitCodes.HandedBackItsLeases"/>): in its own process (<see cref="ConveyorSupervisor.RunAsync"/>),
/// or, for <c>conveyor worker --processes</c>, in a short-lived hand-back process, so that the supervisor never loads a
/// backend.
/// </summary>
internal static partial class LeaseHandBack
{
    /// <summary>Hands back <paramref name="workerId"/>'s leases and slots, then announces the tasks that ended for good;
    /// returns the sweep. Throws when the backend does not take them back; an announcement that fails is logged on
    /// <paramref name="logger"/> and does not fail the hand-back (events are for watching).</summary>
    public static async Task<LeaseSweep> RunAsync(IConveyorBackend backend, string workerId, TimeProvider time, ILogger logger,
        CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(backend);
        ArgumentNullException.ThrowIfNull(time);
        ArgumentNullException.ThrowIfNull(logger);
        var sweep = await backend.Queue.AbandonLeasesAsync(workerId, cancellationToken).WaitAsync(cancellationToken).ConfigureAwait(false);
        // Its concurrency slots come back with its leases.
        await backend.Limits.ReleaseOwnerAsync(workerId, cancellationToken).WaitAsync(cancellationToken).ConfigureAwait(false);
        await AnnounceAsync(backend, sweep, workerId, time, logger, cancellationToken).ConfigureAwait(false);
        return sweep;
    }

    /// <summary>Announces the tasks <paramref name="sweep"/> ended for good, with <paramref name="origin"/> as the events'
    /// origin; a failure is logged, not thrown.</summary>
    public static async Task AnnounceAsync(IConveyorBackend backend, LeaseSweep sweep, string origin, TimeProvider time, ILogger logger,
        CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(time);
        try
        {
            await LeaseEndEvents.AnnounceAsync(backend, sweep, origin, time.GetUtcNow(), cancellationToken).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            LogAnnounceFailed(logger, ex, sweep.Ended.Count, origin);
        }
    }

    [LoggerMessage(60, LogLevel.Warning, "The events of {Count} tasks that the hand-back of worker {WorkerId}'s leases ended for good could not be sent; their state is stored")]
    private static partial void LogAnnounceFailed(ILogger logger, Exception exception, int count, string workerId);
}
