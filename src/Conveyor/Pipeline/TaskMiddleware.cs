namespace Conveyor;

/// <summary>The rest of the execution pipeline after a middleware: the next middleware, or the handler.</summary>
public delegate ValueTask TaskExecutionDelegate(TaskExecutionContext context);

/// <summary>
/// Middleware around every attempt a worker runs. Registered with <see cref="ConveyorBuilder.UseTaskMiddleware{TMiddleware}"/>,
/// run in the order registered, each around the next; one instance per application (a singleton), so it must be
/// thread-safe. A middleware may read and replace <see cref="TaskExecutionContext.Message"/> before the handler runs
/// (its arguments and headers), short-circuit by returning without calling <c>next</c> (the attempt succeeds with
/// <see cref="TaskExecutionContext.Result"/>), fail the attempt by throwing (retried by the task's policy;
/// <see cref="PermanentTaskException"/> fails it for good), and observe the outcome: after <c>next</c> returns the
/// handler succeeded and <see cref="TaskExecutionContext.Result"/> holds its result; when it throws, the attempt failed
/// (or was cancelled, when <see cref="TaskExecutionContext.CancellationToken"/> fired).
/// </summary>
public interface ITaskMiddleware
{
    /// <summary>Runs around one attempt.</summary>
    ValueTask InvokeAsync(TaskExecutionContext context, TaskExecutionDelegate next);
}

/// <summary>One attempt going through the execution pipeline.</summary>
public sealed class TaskExecutionContext
{
    internal TaskExecutionContext(TaskMessage message, int attempt, bool isRedelivery, string workerId,
        IServiceProvider services, CancellationToken cancellationToken)
    {
        Message = message;
        Attempt = attempt;
        IsRedelivery = isRedelivery;
        WorkerId = workerId;
        Services = services;
        CancellationToken = cancellationToken;
        StartedAt = System.Diagnostics.Stopwatch.GetTimestamp();
    }

    /// <summary>The message to run. Replace it (<c>context.Message = context.Message with { Args = … }</c>) to change
    /// what the handler receives; the stored task is not changed.</summary>
    public TaskMessage Message { get; set; }

    /// <summary>1-based attempt number.</summary>
    public int Attempt { get; }

    /// <summary>True when an earlier delivery of this attempt may have started.</summary>
    public bool IsRedelivery { get; }

    /// <summary>The worker running it.</summary>
    public string WorkerId { get; }

    /// <summary>The attempt's DI scope (the handler is resolved from it).</summary>
    public IServiceProvider Services { get; }

    /// <summary>Fires on cancellation, on the task's time limit and when the worker's shutdown grace ends.</summary>
    public CancellationToken CancellationToken { get; }

    /// <summary>The result as JSON once the handler returned, or what a short-circuiting middleware sets.</summary>
    public string? Result { get; set; }

    /// <summary>When the attempt entered the pipeline (a <see cref="System.Diagnostics.Stopwatch"/> timestamp).</summary>
    public long StartedAt { get; }

    /// <summary>Time since the attempt entered the pipeline.</summary>
    public TimeSpan Elapsed => System.Diagnostics.Stopwatch.GetElapsedTime(StartedAt);

    /// <summary>State shared by the middleware of this attempt.</summary>
    public IDictionary<string, object?> Items => _items ??= new Dictionary<string, object?>(StringComparer.Ordinal);

    private Dictionary<string, object?>? _items;
}
