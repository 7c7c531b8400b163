using Conveyor.Backends;
using Microsoft.Extensions.Logging;

namespace Conveyor;

/// <summary>
/// Leader-only: every <see cref="Interval"/>, removes the unique-key claims that no longer hold
/// (<see cref="UniqueKeys.SweepAsync"/>), so that the claims table does not keep every key ever used. Holding is judged
/// from each claim's task, so the sweep changes no answer an enqueue gets: it runs seldom and reads one task per claim.
/// </summary>
internal sealed partial class UniqueKeySweeper(
    IConveyorBackend backend,
    ILeadership leadership,
    TimeProvider time,
    ILogger<UniqueKeySweeper> logger) : LeaderOnlyService(leadership, time, logger)
{
    /// <summary>How often claims are swept: 10 minutes.</summary>
    internal static readonly TimeSpan Interval = TimeSpan.FromMinutes(10);

    private const int PageSize = 500;
    private readonly TimeProvider _time = time;

    protected override string Name => "unique-keys";

    protected override async Task<TimeSpan> RunOnceAsync(CancellationToken leading)
    {
        var removed = await UniqueKeys.SweepAsync(backend, _time, PageSize, leading).ConfigureAwait(false);
        if (removed > 0)
        {
            LogRemoved(removed);
        }
        return Interval;
    }

    [LoggerMessage(25, LogLevel.Information, "Unique keys: removed {Count} claims that no longer hold")]
    private partial void LogRemoved(int count);
}
