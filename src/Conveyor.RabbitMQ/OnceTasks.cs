using System.Collections.Concurrent;

namespace Conveyor.RabbitMQ;

/// <summary>Work done once per key (a queue declaration, a consumer), shared by the callers that wait for it, and
/// forgotten when it fails so that the next caller tries again.</summary>
internal static class OnceTasks
{
    public static Task RunAsync(ConcurrentDictionary<string, Lazy<Task>> cache, string key, Func<string, Task> work, CancellationToken cancellationToken)
    {
        var lazy = cache.GetOrAdd(key, k => new Lazy<Task>(() => work(k)));
        return ForgetOnFailure(cache, key, lazy).WaitAsync(cancellationToken);
    }

    /// <summary>Waits for every piece of work under way, ignoring failures (a failed piece left nothing behind).</summary>
    public static async Task SettleAllAsync(IEnumerable<Lazy<Task>> pending, CancellationToken cancellationToken)
    {
        foreach (var lazy in pending.ToList())
        {
            try
            {
                await lazy.Value.ConfigureAwait(false);
            }
            catch (Exception e) when (e is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
            {
                // A failed declaration or consumer left nothing to wait for.
            }
        }
    }

    private static async Task ForgetOnFailure(ConcurrentDictionary<string, Lazy<Task>> cache, string key, Lazy<Task> lazy)
    {
        try
        {
            await lazy.Value.ConfigureAwait(false);
        }
        catch
        {
            cache.TryRemove(new KeyValuePair<string, Lazy<Task>>(key, lazy));
            throw;
        }
    }
}
