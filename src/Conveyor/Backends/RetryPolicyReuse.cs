namespace Conveyor.Backends;

/// <summary>
/// The retry policy a fetch read last, handed out again while the next tasks it reads store the same delays and jitter:
/// the tasks of one fetch mostly share a policy (the default, or that of the enqueue that made them), and a
/// <see cref="RetryPolicy"/> is immutable, so they may share one instance rather than each build an equal one. Starts
/// from <see cref="RetryPolicy.Default"/>. A mutable struct: keep it in a field or local and call it there, not on a copy.
/// </summary>
public struct RetryPolicyReuse
{
    private RetryPolicy? _last;

    /// <summary>A policy with these delays and jitter: the last one handed out when it has them.</summary>
    public RetryPolicy Get(TimeSpan baseDelay, TimeSpan maxDelay, double jitter)
    {
        if (_last is { } last && Has(last, baseDelay, maxDelay, jitter))
        {
            return last;
        }
        // The default is shared by every fetch: back to it after a run of tasks with a policy of their own.
        var policy = Has(RetryPolicy.Default, baseDelay, maxDelay, jitter) ? RetryPolicy.Default : new RetryPolicy(baseDelay, maxDelay, jitter);
        _last = policy;
        return policy;
    }

    private static bool Has(RetryPolicy policy, TimeSpan baseDelay, TimeSpan maxDelay, double jitter) =>
        policy.BaseDelay == baseDelay && policy.MaxDelay == maxDelay && policy.Jitter.Equals(jitter);

    /// <summary><see cref="Get(TimeSpan, TimeSpan, double)"/> with the delays in milliseconds, as backends store them.</summary>
    public RetryPolicy Get(long baseDelayMs, long maxDelayMs, double jitter) =>
        Get(TimeSpan.FromMilliseconds(baseDelayMs), TimeSpan.FromMilliseconds(maxDelayMs), jitter);
}
