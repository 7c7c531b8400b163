using Conveyor.Backends;

namespace Conveyor;

/// <summary>
/// What a failed, snoozed or retried attempt becomes: a retry at a time, or dead. Written once for the worker, the
/// hard time limit's watchdog and the inline test runner, so that all three apply a task's <see cref="RetryPolicy"/>
/// the same way.
/// </summary>
internal static class AttemptOutcomes
{
    /// <summary>The error type recorded for a snooze (<see cref="SnoozeTaskException"/>).</summary>
    public const string SnoozedErrorType = "Conveyor.Snoozed";

    /// <summary>The error type of a task that went dead for snoozing more than its limit in a row.</summary>
    public const string SnoozeLimitErrorType = "Conveyor.SnoozeLimit";

    /// <summary>The outcome of an attempt whose handler threw <paramref name="exception"/> (other than a cancellation the
    /// worker caused): a <see cref="RetryTaskException"/> retries when it asks, a <see cref="PermanentTaskException"/> is
    /// dead, any other exception is retried if the policy's lists allow it and attempts remain. A
    /// <see cref="SnoozeTaskException"/> is not a failure: see <see cref="Snoozed"/>.</summary>
    public static Completion Failed(Lease lease, Exception exception, DateTimeOffset now, Random? random = null)
    {
        ArgumentNullException.ThrowIfNull(lease);
        ArgumentNullException.ThrowIfNull(exception);
        switch (exception)
        {
            case RetryTaskException retry:
                {
                    var error = TaskError.From(retry.InnerException ?? retry);
                    if (lease.Attempt >= lease.Message.MaxAttempts)
                    {
                        return Dead(lease, error, now);
                    }
                    var at = retry.At ?? (retry.Delay is { } delay ? now + delay : now + lease.Message.Retry.DelayAfter(lease.Attempt, random));
                    return Retry(lease, error, at < now ? now : at, now);
                }
            case PermanentTaskException:
                return Dead(lease, TaskError.From(exception), now);
            default:
                return ByPolicy(lease, TaskError.From(exception), exception.GetType(), now, random: random);
        }
    }

    /// <summary>A failed attempt by the task's policy: dead when <paramref name="failure"/> is not retried by the policy's
    /// exception lists or the attempt was the last, else a retry after the backoff (at once with <paramref name="retryNow"/>).
    /// A null <paramref name="failure"/> is not the handler's own failure (the worker shut down under it): the lists do not
    /// apply to it.</summary>
    public static Completion ByPolicy(Lease lease, TaskError error, Type? failure, DateTimeOffset now, bool retryNow = false, Random? random = null)
    {
        ArgumentNullException.ThrowIfNull(lease);
        var policy = lease.Message.Retry;
        if ((failure is not null && !policy.ShouldRetry(failure)) || lease.Attempt >= lease.Message.MaxAttempts)
        {
            return Dead(lease, error, now);
        }
        return Retry(lease, error, retryNow ? now : now + policy.DelayAfter(lease.Attempt, random), now);
    }

    /// <summary>A snooze: the task waits <paramref name="delay"/> with its attempt unspent (an <see cref="Completion.Unstarted"/>
    /// retry) and a <see cref="SnoozedErrorType"/> line in its history; or, when it has already snoozed
    /// <paramref name="maxSnoozes"/> times in a row (<paramref name="snoozedBefore"/>), dead with <see cref="SnoozeLimitErrorType"/>.</summary>
    public static Completion Snoozed(Lease lease, TimeSpan delay, int snoozedBefore, int maxSnoozes, string taskName, DateTimeOffset now)
    {
        ArgumentNullException.ThrowIfNull(lease);
        if (snoozedBefore >= maxSnoozes)
        {
            return Dead(lease, new TaskError(SnoozeLimitErrorType,
                $"The handler snoozed task '{taskName}' more than {maxSnoozes} times in a row, its limit (TaskDefaults.MaxSnoozes, " +
                "else Conveyor:Worker:MaxSnoozes): snooze for longer, or raise the limit."), now);
        }
        return new Completion
        {
            Lease = lease.Ref,
            Kind = CompletionKind.Retry,
            Attempt = lease.Attempt,
            Unstarted = true,
            Error = new TaskError(SnoozedErrorType,
                $"Snoozed by its handler for {delay} (snooze {snoozedBefore + 1} in a row, at most {maxSnoozes}); the attempt is not spent."),
            RetryAt = now + delay,
            At = now,
        };
    }

    /// <summary>How many snoozes end the task's error history in a row: the snoozes since its last other error.</summary>
    public static int TrailingSnoozes(TaskRecord? record)
    {
        if (record is null)
        {
            return 0;
        }
        var count = 0;
        for (var i = record.Errors.Count - 1; i >= 0 && record.Errors[i].Error.Type == SnoozedErrorType; i--)
        {
            count++;
        }
        return count;
    }

    private static Completion Dead(Lease lease, TaskError error, DateTimeOffset now) =>
        new() { Lease = lease.Ref, Kind = CompletionKind.Dead, Attempt = lease.Attempt, Error = error, At = now };

    private static Completion Retry(Lease lease, TaskError error, DateTimeOffset at, DateTimeOffset now) =>
        new() { Lease = lease.Ref, Kind = CompletionKind.Retry, Attempt = lease.Attempt, Error = error, RetryAt = at, At = now };
}
