using Conveyor.Backends;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Conveyor;

/// <summary>
/// Leader-only: makes scheduled and retrying tasks whose time has come ready, then sleeps until the next one is due, at
/// most <see cref="SchedulerOptions.PromotionInterval"/>; an enqueue with an ETA in this process wakes it sooner.
/// </summary>
internal sealed class DuePromoter(
    IConveyorBackend backend,
    IOptions<ConveyorOptions> options,
    SchedulerSignal signal,
    ILeadership leadership,
    TimeProvider time,
    ILogger<DuePromoter> logger) : LeaderOnlyService(leadership, time, logger)
{
    private readonly TimeProvider _time = time;

    protected override string Name => "promote due tasks";

    protected override Task WakeSignal => signal.WaitAsync();

    protected override async Task<TimeSpan> RunOnceAsync(CancellationToken leading)
    {
        await backend.Queue.PromoteDueAsync(leading).ConfigureAwait(false);
        var sleep = options.Value.Scheduler.PromotionInterval;
        if (await backend.Queue.NextDueAsync(leading).ConfigureAwait(false) is { } due)
        {
            var untilDue = due - _time.GetUtcNow();
            sleep = untilDue < TimeSpan.Zero ? TimeSpan.Zero : (untilDue < sleep ? untilDue : sleep);
        }
        return sleep;
    }
}
