using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;

namespace Conveyor;

/// <summary>Stops this process's worker from fetching before its leases are handed back behind its back (a second stop
/// signal, a hard time limit): otherwise its fetch loop could lease the very tasks just handed back, and hold them
/// until they ran out, since the process is about to end.</summary>
internal static class WorkerStop
{
    /// <summary>Longest wait for a fetch in flight to return; past it the hand-back goes ahead.</summary>
    private static readonly TimeSpan FetchDeadline = TimeSpan.FromSeconds(2);

    public static async Task StopFetchingAsync(IServiceProvider services, WorkerStatus status)
    {
        var worker = services.GetServices<IHostedService>().OfType<WorkerService>().FirstOrDefault();
        if (worker is null)
        {
            return;
        }
        // A cancelled token: cancel the worker's stopping token (its fetch loops end) without waiting for its drain.
        using var now = new CancellationTokenSource();
        await now.CancelAsync().ConfigureAwait(false);
        try
        {
            await worker.StopAsync(now.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
        }
        try
        {
            await status.FetchingStopped.WaitAsync(FetchDeadline).ConfigureAwait(false);
        }
        catch (TimeoutException)
        {
        }
    }
}
