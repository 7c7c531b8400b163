namespace Conveyor.Testing;

/// <summary>How <see cref="InlineTaskRunner"/> runs tasks in the test's own flow.</summary>
public sealed class InlineExecutionOptions
{
    /// <summary>When true, a task that ends dead (out of attempts, or a <see cref="PermanentTaskException"/>) fails the
    /// call that ran it with a <see cref="TaskExecutionException"/> holding the handler's exception, after its outcome
    /// is stored, so a bug in a handler fails the test that enqueued it. Default true; set it to false to test failures
    /// by the task's stored state.</summary>
    public bool RethrowFailures { get; set; } = true;

    /// <summary>When true, a failed attempt with attempts left, a retry the handler asked for at a later time
    /// (<see cref="RetryTaskException"/>) and a snooze (<see cref="SnoozeTaskException"/>) run again at once instead of
    /// after their delay (<see cref="RetryPolicy"/>), so retries happen within the call. When false the retry waits for its time on the
    /// backend's clock and runs at a later <see cref="InlineTaskRunner.RunPendingAsync"/>. Default true.</summary>
    public bool SkipRetryDelays { get; set; } = true;

    /// <summary>The lease an inline attempt holds. Default 1 day: long enough that no lease reaper, on any clock a
    /// test moves, takes a task from a handler that is still running.</summary>
    public TimeSpan LeaseDuration { get; set; } = TimeSpan.FromDays(1);
}

/// <summary>A task run inline ended dead; <see cref="Exception.InnerException"/> is what its last attempt threw.</summary>
public sealed class TaskExecutionException : Exception
{
    /// <summary>Creates the exception.</summary>
    public TaskExecutionException()
        : this("A task run inline failed.")
    {
    }

    /// <summary>Creates the exception with a message.</summary>
    public TaskExecutionException(string message)
        : base(message)
    {
    }

    /// <summary>Creates the exception with a message and the handler's exception.</summary>
    public TaskExecutionException(string message, Exception innerException)
        : base(message, innerException)
    {
    }

    /// <summary>Creates the exception for <paramref name="task"/>, as stored after its last attempt.</summary>
    public TaskExecutionException(TaskRecord task, Exception? innerException)
        : base(Describe(task), innerException)
    {
        Task = task;
    }

    /// <summary>The task as stored after its last attempt; null when built without one.</summary>
    public TaskRecord? Task { get; }

    private static string Describe(TaskRecord task)
    {
        ArgumentNullException.ThrowIfNull(task);
        return $"Task '{task.Task}' {task.Id} ended {task.State.ToApiName()} after {task.Attempts} attempt(s): {task.Error?.Type}: {task.Error?.Message}";
    }
}
