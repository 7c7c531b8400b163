namespace Conveyor;

/// <summary>
/// The retry defaults of a handler's task, declared on the handler class (Hangfire's <c>[AutomaticRetry]</c>): read once
/// by <c>AddTask</c>, before the registration's own <c>configure</c> code, which can still change them.
/// </summary>
/// <example><code>
/// [TaskRetry(Backoff = RetryBackoff.Fixed, DelaySeconds = 30, MaxAttempts = 10,
///     RetryOn = [typeof(HttpRequestException), typeof(TimeoutException)])]
/// internal sealed class CallScoringService : ITaskHandler&lt;FlightArgs&gt; { … }
/// </code></example>
[AttributeUsage(AttributeTargets.Class, AllowMultiple = false, Inherited = true)]
public sealed class TaskRetryAttribute : Attribute
{
    /// <summary>How the delay grows. Default <see cref="RetryBackoff.Exponential"/>.</summary>
    public RetryBackoff Backoff { get; set; } = RetryBackoff.Exponential;

    /// <summary>Delay after the first failure, in seconds (every failure's, for a fixed backoff). Default 1.</summary>
    public double DelaySeconds { get; set; } = 1;

    /// <summary>Longest delay of an exponential backoff, in seconds; ignored by a fixed one. Default 600 (10 min).</summary>
    public double MaxDelaySeconds { get; set; } = 600;

    /// <summary>Relative spread of delays, 0 to 1. Default 0.2 (±20 %).</summary>
    public double Jitter { get; set; } = 0.2;

    /// <summary>When not empty, only these exceptions (and types derived from them) are retried. Default empty: all.</summary>
#pragma warning disable CA1819 // Attribute arguments can only be arrays; the attribute is read once, at registration.
    public Type[] RetryOn { get; set; } = [];

    /// <summary>These exceptions (and types derived from them) are never retried; wins over <see cref="RetryOn"/>. Default empty.</summary>
    public Type[] NeverRetryOn { get; set; } = [];
#pragma warning restore CA1819

    /// <summary>Attempts in all, 1 to 1,000; 0 (the default) leaves the task's default of 5.</summary>
    public int MaxAttempts { get; set; }

    /// <summary>Snoozes in a row before the task goes dead; -1 (the default) leaves the worker's limit.</summary>
    public int MaxSnoozes { get; set; } = -1;

    /// <summary>The policy this attribute declares.</summary>
    public RetryPolicy ToPolicy()
    {
        var delay = Seconds(DelaySeconds, nameof(DelaySeconds));
        var policy = Backoff == RetryBackoff.Fixed
            ? RetryPolicy.Fixed(delay, Jitter)
            : RetryPolicy.Exponential(delay, Seconds(MaxDelaySeconds, nameof(MaxDelaySeconds)), Jitter);
        return policy.WithRetryOn(RetryOn).WithNeverRetryOn(NeverRetryOn);
    }

    /// <summary>Applies the attribute of <typeparamref name="THandler"/>, if it has one, to <paramref name="defaults"/>.</summary>
    internal static void ApplyTo<THandler>(TaskDefaults defaults)
    {
        if (GetCustomAttribute(typeof(THandler), typeof(TaskRetryAttribute)) is not TaskRetryAttribute attribute)
        {
            return;
        }
        defaults.Retry = attribute.ToPolicy();
        if (attribute.MaxAttempts != 0)
        {
            defaults.MaxAttempts = attribute.MaxAttempts;
        }
        if (attribute.MaxSnoozes != -1)
        {
            defaults.MaxSnoozes = attribute.MaxSnoozes;
        }
    }

    private static TimeSpan Seconds(double seconds, string name)
    {
        if (double.IsNaN(seconds) || seconds < 0 || seconds > RetryPolicy.MaxAllowedDelay.TotalSeconds)
        {
            throw new ArgumentOutOfRangeException(name, seconds, $"[TaskRetry] {name} must be from 0 to {RetryPolicy.MaxAllowedDelay.TotalSeconds} seconds.");
        }
        return TimeSpan.FromSeconds(seconds);
    }
}
