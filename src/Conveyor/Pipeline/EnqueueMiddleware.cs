namespace Conveyor;

/// <summary>The rest of the enqueue pipeline after a middleware: the next middleware, or the backend.</summary>
public delegate ValueTask<IReadOnlyList<EnqueueResult>> EnqueueDelegate(EnqueueContext context);

/// <summary>
/// Middleware around every enqueue, from <see cref="ITaskClient"/> and from the HTTP API alike (the API enqueues
/// through the client). Registered with <see cref="ConveyorBuilder.UseEnqueueMiddleware{TMiddleware}"/>, run in the
/// order registered, each around the next; one instance per application (a singleton), so it must be thread-safe.
/// A middleware may read and replace the messages (<see cref="EnqueueContext.Messages"/>: a message is immutable;
/// replace it with <c>message with { Headers = … }</c>), refuse the batch by throwing (the caller sees the exception;
/// nothing is stored), short-circuit by returning results without calling <c>next</c>, and observe what was stored.
/// </summary>
public interface IEnqueueMiddleware
{
    /// <summary>Handles one enqueue call (one message, or a batch stored all or none).</summary>
    ValueTask<IReadOnlyList<EnqueueResult>> EnqueueAsync(EnqueueContext context, EnqueueDelegate next);
}

/// <summary>One enqueue call going through the pipeline.</summary>
public sealed class EnqueueContext
{
    internal EnqueueContext(TaskMessage[] messages, IServiceProvider services, CancellationToken cancellationToken)
    {
        Messages = messages;
        Services = services;
        CancellationToken = cancellationToken;
    }

    /// <summary>The messages to store, in order. Replace an element to change a message; the count is fixed, as each
    /// message gets one result.</summary>
    public IList<TaskMessage> Messages { get; }

    /// <summary>The application's services.</summary>
    public IServiceProvider Services { get; }

    /// <summary>The caller's token.</summary>
    public CancellationToken CancellationToken { get; }

    /// <summary>State shared by the middleware of this call.</summary>
    public IDictionary<string, object?> Items => _items ??= new Dictionary<string, object?>(StringComparer.Ordinal);

    private Dictionary<string, object?>? _items;
}
