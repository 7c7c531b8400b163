using Conveyor.Backends;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Conveyor;

/// <summary>
/// ETA promotion, the lease reaper and retention. Every process may run it; only the one holding the
/// <c>scheduler</c> leadership acts, so each step happens once however many replicas run.
/// </summary>
internal sealed partial class SchedulerService(
    IConveyorBackend backend,
    IOptions<ConveyorOptions> options,
    TimeProvider time,
    SchedulerSignal signal,
    WorkerStatus status,
    ILogger<SchedulerService> logger) : BackgroundService
{
    internal const string LeadershipName = "scheduler";
    private readonly SchedulerOptions _options = options.Value.Scheduler;

    /// <summary>Whether this process holds the scheduler leadership now.</summary>
    public bool IsLeader { get; private set; }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        if (!options.Value.RunScheduler)
        {
            return;
        }
        await Task.Yield();
        var owner = status.WorkerId;
        var nextLeaderCheck = DateTimeOffset.MinValue;
        var nextReap = DateTimeOffset.MinValue;
        var nextPurge = DateTimeOffset.MinValue;
        var failures = 0;
        try
        {
            while (!stoppingToken.IsCancellationRequested)
            {
                var now = time.GetUtcNow();
                var wake = signal.WaitAsync();
                TimeSpan sleep;
                try
                {
                    if (now >= nextLeaderCheck)
                    {
                        var leader = await backend.Coordination.TryAcquireLeadershipAsync(LeadershipName, owner, _options.LeaderLease, stoppingToken).ConfigureAwait(false);
                        if (leader != IsLeader)
                        {
                            LogLeadership(owner, leader);
                        }
                        IsLeader = leader;
                        nextLeaderCheck = now + _options.LeaderLease / 3;
                    }
                    if (!IsLeader)
                    {
                        sleep = _options.LeaderLease / 3;
                    }
                    else
                    {
                        await backend.Queue.PromoteDueAsync(stoppingToken).ConfigureAwait(false);
                        if (now >= nextReap)
                        {
                            var requeued = await backend.Queue.RequeueExpiredLeasesAsync(stoppingToken).ConfigureAwait(false);
                            if (requeued > 0)
                            {
                                LogRequeued(requeued);
                            }
                            nextReap = now + _options.ReaperInterval;
                        }
                        if (now >= nextPurge)
                        {
                            await backend.Store.PurgeFinishedAsync(now - _options.Retention, 10_000, stoppingToken).ConfigureAwait(false);
                            nextPurge = now + TimeSpan.FromMinutes(1);
                        }
                        var nextDue = await backend.Queue.NextDueAsync(stoppingToken).ConfigureAwait(false);
                        sleep = _options.PromotionInterval;
                        if (nextDue is { } due)
                        {
                            var untilDue = due - time.GetUtcNow();
                            sleep = untilDue < TimeSpan.Zero ? TimeSpan.Zero : (untilDue < sleep ? untilDue : sleep);
                        }
                    }
                    failures = 0;
                }
                catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
                {
                    break;
                }
                catch (Exception ex) when (ex is not OutOfMemoryException)
                {
                    if (failures++ == 0)
                    {
                        LogBackendError(ex);
                    }
                    sleep = TimeSpan.FromMilliseconds(Math.Min(5000, 100 * Math.Pow(2, Math.Min(failures, 10))));
                }
                if (sleep > TimeSpan.Zero)
                {
                    try
                    {
                        await Task.WhenAny(wake, Task.Delay(sleep, time, stoppingToken)).ConfigureAwait(false);
                    }
                    catch (OperationCanceledException)
                    {
                        break;
                    }
                }
            }
        }
        finally
        {
            if (IsLeader)
            {
                try
                {
                    await backend.Coordination.ReleaseLeadershipAsync(LeadershipName, owner, CancellationToken.None).ConfigureAwait(false);
                }
                catch (Exception ex) when (ex is not OutOfMemoryException)
                {
                    LogBackendError(ex);
                }
                IsLeader = false;
            }
        }
    }

    [LoggerMessage(20, LogLevel.Information, "Scheduler {Owner} leadership: {IsLeader}")]
    private partial void LogLeadership(string owner, bool isLeader);

    [LoggerMessage(21, LogLevel.Information, "Requeued {Count} tasks whose lease ran out")]
    private partial void LogRequeued(int count);

    [LoggerMessage(22, LogLevel.Warning, "Scheduler backend call failed; retrying with backoff")]
    private partial void LogBackendError(Exception exception);
}

/// <summary>Creates or upgrades the backend's schema before the worker and scheduler start.</summary>
internal sealed class BackendStartupService(IConveyorBackend backend) : IHostedService
{
    public Task StartAsync(CancellationToken cancellationToken) => backend.MigrateAsync(cancellationToken);

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
}
