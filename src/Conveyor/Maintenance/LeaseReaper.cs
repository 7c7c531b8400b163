using Conveyor.Backends;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Conveyor;

/// <summary>
/// Leader-only: every <see cref="SchedulerOptions.ReaperInterval"/>, makes tasks whose lease ran out (their worker died
/// or stalled) ready again, as redeliveries.
/// </summary>
internal sealed partial class LeaseReaper(
    IConveyorBackend backend,
    IOptions<ConveyorOptions> options,
    ILeadership leadership,
    TimeProvider time,
    ConveyorMetrics metrics,
    ILogger<LeaseReaper> logger) : LeaderOnlyService(leadership, time, logger)
{
    protected override string Name => "requeue expired leases";

    protected override async Task<TimeSpan> RunOnceAsync(CancellationToken leading)
    {
        var requeued = await backend.Queue.RequeueExpiredLeasesAsync(leading).ConfigureAwait(false);
        if (requeued > 0)
        {
            metrics.LeasesExpired(requeued);
            LogRequeued(requeued);
        }
        return options.Value.Scheduler.ReaperInterval;
    }

    [LoggerMessage(21, LogLevel.Information, "Requeued {Count} tasks whose lease ran out")]
    private partial void LogRequeued(int count);
}
