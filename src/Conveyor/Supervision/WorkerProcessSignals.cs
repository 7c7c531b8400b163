using System.Runtime.InteropServices;
using Conveyor.Backends;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Conveyor;

/// <summary>
/// How a worker process is told to stop, besides the host's own handling of the first SIGTERM or SIGINT (a drain):
/// <list type="bullet">
/// <item>Alone (no supervisor): a second SIGTERM or SIGINT stops it at once. Its leases are abandoned (unstarted ones
/// come back unspent, running ones as interrupted attempts; the events of tasks that this ended for good are sent to the
/// other processes, <see cref="LeaseEndEvents.AnnounceAsync"/>) within a few seconds at most, and the process exits with
/// 128 + the signal. The host's console lifetime ignores a second signal, so without this an operator could only
/// <c>kill -9</c>, and the leases would wait out their time.</item>
/// <item>A supervised child (<see cref="ConveyorSupervisor.IsChildProcess"/>): the end of its standard input means "drain
/// and exit": the supervisor closed it, or died. Signals only ever drain a child: the process group's copy of a signal
/// and the supervisor's would otherwise count as two. The supervisor kills a child it wants stopped at once. A byte on
/// that input hands a spare child its turn (<see cref="SpareTurn"/>).</item>
/// </list>
/// </summary>
internal sealed partial class WorkerProcessSignals(
    IConveyorBackend backend,
    IOptions<ConveyorOptions> options,
    WorkerStatus status,
    IHostApplicationLifetime lifetime,
    IServiceProvider services,
    TimeProvider time,
    ILogger<WorkerProcessSignals> logger) : IHostedService, IDisposable
{
    /// <summary>Longest the leases' hand-back may hold up an immediate stop (the backend may be down).</summary>
    private static readonly TimeSpan AbandonDeadline = TimeSpan.FromSeconds(3);
    private readonly List<PosixSignalRegistration> _registrations = [];
    private int _signals;

    public Task StartAsync(CancellationToken cancellationToken)
    {
        if (!options.Value.RunWorker)
        {
            return Task.CompletedTask;
        }
        if (ConveyorSupervisor.IsChildProcess)
        {
            var watcher = new Thread(WatchSupervisor) { IsBackground = true, Name = "Conveyor supervisor input" };
            watcher.Start();
            return Task.CompletedTask;
        }
        try
        {
            _registrations.Add(PosixSignalRegistration.Create(PosixSignal.SIGINT, OnSignal));
            _registrations.Add(PosixSignalRegistration.Create(PosixSignal.SIGTERM, OnSignal));
        }
        catch (PlatformNotSupportedException)
        {
            // No such signals here: the host's own handling is all there is.
        }
        return Task.CompletedTask;
    }

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    private void OnSignal(PosixSignalContext context)
    {
        context.Cancel = true;
        if (Interlocked.Increment(ref _signals) == 1)
        {
            LogDraining(context.Signal.ToString(), status.WorkerId, options.Value.Worker.ShutdownTimeout);
            // The host's lifetime drains on this one too; stopping twice is harmless.
            lifetime.StopApplication();
            return;
        }
        var code = 128 + (context.Signal == PosixSignal.SIGINT ? 2 : 15);
        // Off the signal thread: the hand-back awaits the backend.
        _ = Task.Run(() => StopNowAsync(code));
    }

    private async Task StopNowAsync(int exitCode)
    {
        LogStoppingNow(status.WorkerId, status.Running);
        using var deadline = new CancellationTokenSource(AbandonDeadline);
        try
        {
            await WorkerStop.StopFetchingAsync(services, status).WaitAsync(deadline.Token).ConfigureAwait(false);
            var sweep = await backend.Queue.AbandonLeasesAsync(status.WorkerId, deadline.Token).WaitAsync(deadline.Token).ConfigureAwait(false);
            LogAbandoned(status.WorkerId, sweep.Count);
            // Its concurrency slots go with its leases.
            await backend.Limits.ReleaseOwnerAsync(status.WorkerId, deadline.Token).WaitAsync(deadline.Token).ConfigureAwait(false);
            await LeaseHandBack.AnnounceAsync(backend, sweep, status.WorkerId, time, logger, deadline.Token).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            LogAbandonFailed(ex, status.WorkerId);
        }
        ProcessTermination.ExitNow(exitCode);
    }

    private void WatchSupervisor()
    {
        try
        {
            using var input = Console.OpenStandardInput();
            var buffer = new byte[64];
            while (input.Read(buffer, 0, buffer.Length) > 0)
            {
                // The supervisor writes only to hand a spare its turn (SpareTurn); the end of input means "stop".
                SpareTurn.Begin();
            }
        }
        catch (IOException)
        {
        }
        LogSupervisorStop(status.WorkerId);
        lifetime.StopApplication();
    }

    public void Dispose()
    {
        foreach (var registration in _registrations)
        {
            registration.Dispose();
        }
    }

    [LoggerMessage(5, LogLevel.Information, "{Signal}: worker {WorkerId} drains, running tasks get up to {Timeout}; a second signal stops it at once")]
    private partial void LogDraining(string signal, string workerId, TimeSpan timeout);

    [LoggerMessage(1, LogLevel.Warning, "Second stop signal: worker {WorkerId} stops at once, {Running} tasks running")]
    private partial void LogStoppingNow(string workerId, int running);

    [LoggerMessage(2, LogLevel.Information, "Worker {WorkerId} handed back {Count} leases")]
    private partial void LogAbandoned(string workerId, int count);

    [LoggerMessage(3, LogLevel.Warning, "Could not hand back the leases of worker {WorkerId}; they come back when they run out")]
    private partial void LogAbandonFailed(Exception exception, string workerId);

    [LoggerMessage(4, LogLevel.Information, "Worker {WorkerId}: the supervisor asked it to stop (or went away); draining")]
    private partial void LogSupervisorStop(string workerId);
}
