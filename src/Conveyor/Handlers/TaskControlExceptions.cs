namespace Conveyor;

/// <summary>
/// Thrown by a handler to fail this attempt and ask for the next one at a given time (or after a delay), whatever the
/// task's backoff and exception lists say: Celery's <c>self.retry(countdown=…)</c>. The attempt is spent; on the task's
/// last attempt it goes <c>dead</c>. The error recorded is <see cref="Exception.InnerException"/> when given (the cause),
/// else this exception. Without a time or delay, the next attempt follows the task's backoff.
/// </summary>
/// <example><code>
/// catch (HttpRequestException ex) when (ex.StatusCode == HttpStatusCode.TooManyRequests)
/// {
///     throw new RetryTaskException(TimeSpan.FromSeconds(retryAfter), ex);
/// }
/// </code></example>
public class RetryTaskException : Exception
{
    /// <summary>Retries by the task's backoff, even if its exception lists would not.</summary>
    public RetryTaskException() : base("The handler asked for a retry.") { }

    /// <summary>Retries by the task's backoff, with a message.</summary>
    public RetryTaskException(string message) : base(message) { }

    /// <summary>Retries by the task's backoff; <paramref name="innerException"/> is recorded as the attempt's error.</summary>
    public RetryTaskException(string message, Exception innerException) : base(message, innerException) { }

    /// <summary>Retries <paramref name="delay"/> from now; <paramref name="cause"/>, when given, is recorded as the error.</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="delay"/> is negative.</exception>
    public RetryTaskException(TimeSpan delay, Exception? cause = null)
        : base(cause is null ? $"The handler asked for a retry in {delay}." : $"The handler asked for a retry in {delay}: {cause.Message}", cause)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(delay, TimeSpan.Zero);
        Delay = delay;
    }

    /// <summary>Retries at <paramref name="at"/> (at once when it is past); <paramref name="cause"/>, when given, is recorded as the error.</summary>
    public RetryTaskException(DateTimeOffset at, Exception? cause = null)
        : base(cause is null ? $"The handler asked for a retry at {at:O}." : $"The handler asked for a retry at {at:O}: {cause.Message}", cause)
    {
        At = at;
    }

    /// <summary>How long from now the next attempt runs; null when <see cref="At"/> or the backoff decides.</summary>
    public TimeSpan? Delay { get; }

    /// <summary>When the next attempt runs; null when <see cref="Delay"/> or the backoff decides.</summary>
    public DateTimeOffset? At { get; }
}

/// <summary>
/// Thrown by a handler to put its task back for later without spending an attempt: the resource it waits for is not
/// ready, not a failure (River's <c>JobSnooze</c>). The task waits in <c>retrying</c> for <see cref="Delay"/>, with its
/// attempt count unchanged and a <c>Conveyor.Snoozed</c> line in its history. Snoozes are bounded: a task that snoozes
/// more than <see cref="TaskDefaults.MaxSnoozes"/> times in a row (default <see cref="WorkerOptions.MaxSnoozes"/>, 100)
/// goes <c>dead</c> with <c>Conveyor.SnoozeLimit</c>, so a task that never gets what it waits for does not loop for ever
/// unseen. Any other error recorded in between (a failed attempt; the limit's own error, for a task retried by hand)
/// starts the count again.
/// </summary>
public class SnoozeTaskException : Exception
{
    /// <summary>Snoozes for no time: the task is due at once, and goes back to its queue (behind what is queued) at the
    /// scheduler's next promotion, within <see cref="SchedulerOptions.PromotionInterval"/> (1 s).</summary>
    public SnoozeTaskException() : base("The handler snoozed the task.") { }

    /// <summary>Snoozes for no time, with a message.</summary>
    public SnoozeTaskException(string message) : base(message) { }

    /// <summary>Snoozes for no time, with a message and cause.</summary>
    public SnoozeTaskException(string message, Exception innerException) : base(message, innerException) { }

    /// <summary>Snoozes for <paramref name="delay"/>.</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="delay"/> is negative.</exception>
    public SnoozeTaskException(TimeSpan delay) : base($"The handler snoozed the task for {delay}.")
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(delay, TimeSpan.Zero);
        Delay = delay;
    }

    /// <summary>How long the task waits before it is offered again. Default zero.</summary>
    public TimeSpan Delay { get; }
}
