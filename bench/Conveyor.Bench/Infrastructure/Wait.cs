using System.Diagnostics;

namespace Conveyor.Bench.Infrastructure;

/// <summary>Polling helpers for conditions the systems under test expose only by query.</summary>
internal static class Wait
{
    /// <summary>Polls <paramref name="condition"/> every <paramref name="interval"/> until it holds;
    /// throws a <see cref="TimeoutException"/> naming <paramref name="what"/> after <paramref name="timeout"/>.</summary>
    public static async Task UntilAsync(Func<Task<bool>> condition, TimeSpan interval, TimeSpan timeout, string what, CancellationToken cancellationToken)
    {
        var start = Stopwatch.GetTimestamp();
        while (!await condition())
        {
            if (Stopwatch.GetElapsedTime(start) > timeout)
            {
                throw new TimeoutException($"Timed out after {timeout.TotalSeconds:0} s waiting for {what}.");
            }
            await Task.Delay(interval, cancellationToken);
        }
    }

    public static Task UntilAsync(Func<bool> condition, TimeSpan interval, TimeSpan timeout, string what, CancellationToken cancellationToken) =>
        UntilAsync(() => Task.FromResult(condition()), interval, timeout, what, cancellationToken);
}
