namespace Conveyor;

/// <summary>Handles a task whose arguments deserialize to <typeparamref name="TArgs"/> and that returns nothing.</summary>
/// <typeparam name="TArgs">Arguments type, read from the message's JSON.</typeparam>
public interface ITaskHandler<in TArgs>
{
    /// <summary>Runs one attempt. Throw to fail it (it is retried by the task's <see cref="RetryPolicy"/>, if its
    /// exception lists allow); throw <see cref="PermanentTaskException"/> to fail without retries,
    /// <see cref="RetryTaskException"/> to retry at a given time, <see cref="SnoozeTaskException"/> to run again later
    /// without spending an attempt. The token fires on cancellation, on the task's time limit and when the worker's
    /// shutdown grace ends.</summary>
    Task HandleAsync(TArgs args, TaskContext context, CancellationToken cancellationToken);
}

/// <summary>Handles a task and returns a result, stored as JSON with the task.</summary>
/// <typeparam name="TArgs">Arguments type.</typeparam>
/// <typeparam name="TResult">Result type, serialized to JSON.</typeparam>
public interface ITaskHandler<in TArgs, TResult>
{
    /// <summary>Runs one attempt and returns its result. See <see cref="ITaskHandler{TArgs}.HandleAsync"/>.</summary>
    Task<TResult> HandleAsync(TArgs args, TaskContext context, CancellationToken cancellationToken);
}

/// <summary>What a handler knows about the attempt it runs.</summary>
public sealed class TaskContext
{
    /// <summary>Creates a context for one attempt.</summary>
    public TaskContext(TaskMessage message, int attempt, bool isRedelivery)
    {
        Message = message;
        Attempt = attempt;
        IsRedelivery = isRedelivery;
    }

    /// <summary>The message being run.</summary>
    public TaskMessage Message { get; }
    /// <summary>Task id.</summary>
    public Guid TaskId => Message.Id;
    /// <summary>Task name.</summary>
    public string TaskName => Message.Task;
    /// <summary>1-based attempt number.</summary>
    public int Attempt { get; }
    /// <summary>True when an earlier delivery of this attempt may have started (its worker died or was stopped).</summary>
    public bool IsRedelivery { get; }
}

/// <summary>Thrown by a handler to fail its task at once, without further attempts: it goes <c>dead</c>.</summary>
public class PermanentTaskException : Exception
{
    /// <summary>Creates the exception.</summary>
    public PermanentTaskException() { }
    /// <summary>Creates the exception with a message.</summary>
    public PermanentTaskException(string message) : base(message) { }
    /// <summary>Creates the exception with a message and cause.</summary>
    public PermanentTaskException(string message, Exception innerException) : base(message, innerException) { }
}
