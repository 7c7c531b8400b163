using Conveyor.Backends;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Conveyor;

/// <summary>
/// Leader-only: every <see cref="SchedulerOptions.ReaperInterval"/>, makes tasks whose lease ran out (their worker died
/// or stalled) ready again, as redeliveries, and raises the events of those that ended for good (dead after their last
/// interrupted attempt, or cancelled), which no worker raises (<see cref="LeaseEndEvents"/>).
/// </summary>
internal sealed partial class LeaseReaper(
    IConveyorBackend backend,
    IOptions<ConveyorOptions> options,
    ILeadership leadership,
    TimeProvider time,
    ConveyorMetrics metrics,
    TaskEventBus events,
    WorkerStatus status,
    ILogger<LeaseReaper> logger) : LeaderOnlyService(leadership, time, logger)
{
    private readonly TimeProvider _time = time;

    protected override string Name => "requeue expired leases";

    protected override async Task<TimeSpan> RunOnceAsync(CancellationToken leading)
    {
        var sweep = await backend.Queue.RequeueExpiredLeasesAsync(leading).ConfigureAwait(false);
        if (sweep.Count > 0)
        {
            metrics.LeasesExpired(sweep.Count);
            LogRequeued(sweep.Count);
            await LeaseEndEvents.PublishAsync(backend.Store, events, sweep, status.WorkerId, _time.GetUtcNow(), leading).ConfigureAwait(false);
        }
        return options.Value.Scheduler.ReaperInterval;
    }

    [LoggerMessage(21, LogLevel.Information, "Requeued {Count} tasks whose lease ran out")]
    private partial void LogRequeued(int count);
}
