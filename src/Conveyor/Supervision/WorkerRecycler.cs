using System.Diagnostics;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Conveyor;

/// <summary>
/// Recycles a worker process past <see cref="WorkerOptions.MaxTasksPerChild"/> finished attempts or
/// <see cref="WorkerOptions.MaxMemoryPerChild"/> of resident memory: it logs why, sets the exit code
/// <see cref="WorkerExitCodes.Recycled"/> and stops the host, whose worker then drains as at any shutdown (stops
/// fetching, hands back unstarted leases unspent, waits for the running handlers). The supervisor (or systemd) starts a
/// fresh process. Checked a few times a second rather than after each task, so the hot path pays nothing; a busy
/// process may finish a few tasks past the count.
/// </summary>
internal sealed partial class WorkerRecycler(
    IOptions<ConveyorOptions> options,
    WorkerStatus status,
    IHostApplicationLifetime lifetime,
    TimeProvider time,
    ILogger<WorkerRecycler> logger) : BackgroundService
{
    private static readonly TimeSpan CheckInterval = TimeSpan.FromMilliseconds(200);

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var worker = options.Value.Worker;
        var maxTasks = worker.MaxTasksPerChild;
        var maxMemory = WorkerProcessOptionsChecks.MaxMemoryBytes(worker);
        if (!options.Value.RunWorker || (maxTasks is null && maxMemory is null))
        {
            return;
        }
        using var timer = new PeriodicTimer(CheckInterval, time);
        using var process = Process.GetCurrentProcess();
        try
        {
            while (await timer.WaitForNextTickAsync(stoppingToken).ConfigureAwait(false))
            {
                if (maxTasks is { } tasks && status.Processed >= tasks)
                {
                    LogRecyclingForTasks(status.WorkerId, status.Processed, tasks);
                    Recycle();
                    return;
                }
                if (maxMemory is { } memory)
                {
                    process.Refresh();
                    var resident = process.WorkingSet64;
                    if (resident >= memory)
                    {
                        LogRecyclingForMemory(status.WorkerId, MemorySize.Format(resident), MemorySize.Format(memory), status.Processed);
                        Recycle();
                        return;
                    }
                }
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
    }

    private void Recycle()
    {
        Environment.ExitCode = WorkerExitCodes.Recycled;
        lifetime.StopApplication();
    }

    [LoggerMessage(1, LogLevel.Information, "Worker {WorkerId} recycles: {Processed} tasks finished, the limit is {MaxTasks} (max tasks per child); it drains and exits to be replaced")]
    private partial void LogRecyclingForTasks(string workerId, long processed, long maxTasks);

    [LoggerMessage(2, LogLevel.Information, "Worker {WorkerId} recycles: resident memory {Resident} passed the limit of {MaxMemory} (max memory per child) after {Processed} tasks; it drains and exits to be replaced")]
    private partial void LogRecyclingForMemory(string workerId, string resident, string maxMemory, long processed);
}
