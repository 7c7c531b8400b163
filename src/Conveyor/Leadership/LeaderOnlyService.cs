using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Conveyor;

/// <summary>
/// A background service that works only while this process leads (<see cref="ILeadership"/>): one pass of its work, then
/// a pause it chooses, for as long as the term lasts. A pass that throws is logged once per outage and retried with a
/// backoff (100 ms doubling to 5 s). Derive from it and register it with <c>services.AddHostedService&lt;T&gt;()</c>.
/// </summary>
public abstract partial class LeaderOnlyService : BackgroundService
{
    private readonly ILeadership _leadership;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;

    /// <summary>Creates the service.</summary>
    protected LeaderOnlyService(ILeadership leadership, TimeProvider time, ILogger logger)
    {
        _leadership = leadership;
        _time = time;
        _logger = logger;
    }

    /// <summary>A short name for logs, such as <c>retention</c>.</summary>
    protected abstract string Name { get; }

    /// <summary>Runs one pass as leader and returns how long to pause before the next. <paramref name="leading"/> is
    /// cancelled when the term ends.</summary>
    protected abstract Task<TimeSpan> RunOnceAsync(CancellationToken leading);

    /// <summary>Completes when the next pause should end early (new work for the pass); by default never.</summary>
    protected virtual Task WakeSignal => Task.Delay(Timeout.Infinite);

    /// <inheritdoc />
    protected sealed override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        // The host cancels this token on its own thread: the calls under way must not end there (DetachedCancellation).
        using var detached = DetachedCancellation.LinkTo(stoppingToken);
        stoppingToken = detached.Token;
        await Task.Yield();
        while (!stoppingToken.IsCancellationRequested)
        {
            CancellationToken term;
            try
            {
                term = await _leadership.WaitForLeadershipAsync(stoppingToken).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                return;
            }
            using var leading = CancellationTokenSource.CreateLinkedTokenSource(term, stoppingToken);
            await LeadAsync(leading.Token, term, stoppingToken).ConfigureAwait(false);
        }
    }

    private async Task LeadAsync(CancellationToken leading, CancellationToken term, CancellationToken stoppingToken)
    {
        var failures = 0;
        // The term too: its end reaches the linked token only once its callbacks run, on the thread pool
        // (DetachedCancellation), while the term reads as ended at once; no pass starts after it.
        while (!leading.IsCancellationRequested && !term.IsCancellationRequested)
        {
            var wake = WakeSignal;
            TimeSpan pause;
            try
            {
                // Not waited for past the host's stop: a backend that does not answer (a connection attempt does not
                // always honour the token) would hold the stop for its own timeout, past the worker's documented bound.
                pause = await RunOnceAsync(leading).WaitAsync(stoppingToken).ConfigureAwait(false);
                if (failures > 0)
                {
                    LogRecovered(_logger, Name);
                }
                failures = 0;
            }
            catch (OperationCanceledException) when (leading.IsCancellationRequested)
            {
                // The term ended, or the host stops (stoppingToken is part of leading).
                return;
            }
            catch (Exception ex) when (ex is not OutOfMemoryException)
            {
                if (failures++ == 0)
                {
                    LogFailed(_logger, ex, Name);
                }
                pause = TimeSpan.FromMilliseconds(Math.Min(5000, 100 * Math.Pow(2, Math.Min(failures - 1, 10))));
            }
            if (pause <= TimeSpan.Zero)
            {
                continue;
            }
            try
            {
                await Task.WhenAny(wake, Task.Delay(pause, _time, leading)).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                return;
            }
        }
    }

    [LoggerMessage(30, LogLevel.Warning, "Maintenance '{Service}' failed; retrying with backoff")]
    private static partial void LogFailed(ILogger logger, Exception exception, string service);

    [LoggerMessage(31, LogLevel.Information, "Maintenance '{Service}' works again")]
    private static partial void LogRecovered(ILogger logger, string service);
}
