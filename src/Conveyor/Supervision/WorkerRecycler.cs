using System.Diagnostics;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Conveyor;

/// <summary>
/// Recycles a worker process past <see cref="WorkerOptions.MaxTasksPerChild"/> finished attempts or
/// <see cref="WorkerOptions.MaxMemoryPerChild"/> of resident memory: it logs why, sets the exit code
/// <see cref="WorkerExitCodes.Recycled"/> and stops the host, whose worker then drains as at any shutdown (stops
/// fetching, hands back unstarted leases unspent, waits for the running handlers, ends what it still holds). The
/// supervisor (or systemd) starts a fresh process; a supervisor is told at once (<see cref="ChildNotice"/>), and
/// starts it while this one drains. A supervised child gets its exit code from the end of its drain: 75
/// once the backend confirmed that it handed back every lease, so that its supervisor has nothing to do for it. The count is kept by <see cref="WorkerStatus"/>: no attempt starts past it
/// (<see cref="WorkerStatus.TryStart"/>), and the drain starts as the last of them finishes. Memory is read a few times a
/// second.
/// </summary>
internal sealed partial class WorkerRecycler(
    IOptions<ConveyorOptions> options,
    WorkerStatus status,
    IHostApplicationLifetime lifetime,
    IServiceProvider services,
    TimeProvider time,
    ILogger<WorkerRecycler> logger) : BackgroundService
{
    private static readonly TimeSpan MemoryCheckInterval = TimeSpan.FromMilliseconds(200);

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        // The host cancels this token on its own thread: the calls under way must not end there (DetachedCancellation).
        using var detached = DetachedCancellation.LinkTo(stoppingToken);
        stoppingToken = detached.Token;
        var worker = options.Value.Worker;
        var maxTasks = worker.MaxTasksPerChild;
        var maxMemory = WorkerProcessOptionsChecks.MaxMemoryBytes(worker);
        if (!options.Value.RunWorker || (maxTasks is null && maxMemory is null))
        {
            return;
        }
        try
        {
            // A spare counts nothing until its turn: its idle memory is no reason to recycle it.
            await SpareTurn.WaitAsync(stoppingToken).ConfigureAwait(false);
            var byCount = maxTasks is { } tasks ? status.ProcessedReachedAsync(tasks) : null;
            var byMemory = maxMemory is { } memory ? WatchMemoryAsync(memory, stoppingToken) : null;
            var stopped = Task.Delay(Timeout.Infinite, stoppingToken);
            var reached = await Task.WhenAny(new[] { byCount, byMemory, stopped }.OfType<Task>()).ConfigureAwait(false);
            if (reached == stopped || stoppingToken.IsCancellationRequested)
            {
                return;
            }
            if (reached == byCount)
            {
                LogRecyclingForTasks(status.WorkerId, status.Processed, maxTasks!.Value);
            }
            await RecycleAsync().ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
    }

    /// <summary>Completes (after logging) once the resident memory passes <paramref name="limit"/>; read a few times a
    /// second, since memory has no event to wait on.</summary>
    private async Task WatchMemoryAsync(long limit, CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(MemoryCheckInterval, time);
        using var process = Process.GetCurrentProcess();
        while (await timer.WaitForNextTickAsync(stoppingToken).ConfigureAwait(false))
        {
            process.Refresh();
            var resident = process.WorkingSet64;
            if (resident >= limit)
            {
                LogRecyclingForMemory(status.WorkerId, MemorySize.Format(resident), MemorySize.Format(limit), status.Processed);
                return;
            }
        }
    }

    private async Task RecycleAsync()
    {
        status.Recycling = true;
        if (!ConveyorSupervisor.IsChildProcess)
        {
            Environment.ExitCode = WorkerExitCodes.Recycled;
        }
        // The worker stops fetching now and its drain begins: the host stops its services one at a time, and until it
        // reached the worker, the fetch loops went on leasing and running tasks past the limit (under load, a second's
        // worth or more).
        await WorkerStop.StopFetchingAsync(services, status).ConfigureAwait(false);
        if (ConveyorSupervisor.IsChildProcess)
        {
            // Its supervisor hands its place to the spare, or starts the replacement, now, while this process drains and
            // exits (ChildNotice).
            ChildNotice.Send(status.WorkerId, ChildNoticeKind.Retiring);
        }
        // A supervised child exits 75 only once its drain handed back every lease it held (WorkerService): its supervisor
        // then has nothing to hand back.
        lifetime.StopApplication();
    }

    [LoggerMessage(1, LogLevel.Information, "Worker {WorkerId} recycles: {Processed} tasks finished, the limit is {MaxTasks} (max tasks per child); it drains and exits to be replaced")]
    private partial void LogRecyclingForTasks(string workerId, long processed, long maxTasks);

    [LoggerMessage(2, LogLevel.Information, "Worker {WorkerId} recycles: resident memory {Resident} passed the limit of {MaxMemory} (max memory per child) after {Processed} tasks; it drains and exits to be replaced")]
    private partial void LogRecyclingForMemory(string workerId, string resident, string maxMemory, long processed);
}
