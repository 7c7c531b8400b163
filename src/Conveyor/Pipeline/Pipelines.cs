using Conveyor.Backends;

namespace Conveyor;

/// <summary>The enqueue middleware in registration order around the backend's enqueue, composed once.</summary>
internal sealed class EnqueuePipeline
{
    private readonly IServiceProvider _services;
    private readonly EnqueueDelegate _entry;

    public EnqueuePipeline(IEnumerable<IEnqueueMiddleware> middleware, IConveyorBackend backend, IServiceProvider services, TimeProvider time)
    {
        _services = services;
        var metrics = services.GetService(typeof(ConveyorMetrics)) as ConveyorMetrics;
        EnqueueDelegate next = context => UniqueKeys.EnqueueAsync(backend, time, (TaskMessage[])context.Messages,
            async messages =>
            {
                var started = System.Diagnostics.Stopwatch.GetTimestamp();
                var results = await backend.Queue.EnqueueAsync(messages, context.CancellationToken).ConfigureAwait(false);
                metrics?.BackendCall("enqueue", started);
                return results;
            }, context.CancellationToken);
        var all = middleware.ToArray();
        for (var i = all.Length - 1; i >= 0; i--)
        {
            var current = all[i];
            var inner = next;
            next = context => current.EnqueueAsync(context, inner);
        }
        _entry = next;
    }

    /// <summary>Runs <paramref name="messages"/> through the middleware to the backend; middleware may replace
    /// elements of the array.</summary>
    public ValueTask<IReadOnlyList<EnqueueResult>> RunAsync(TaskMessage[] messages, CancellationToken cancellationToken) =>
        _entry(new EnqueueContext(messages, _services, cancellationToken));
}

/// <summary>The task middleware in registration order around the handler, composed once.</summary>
internal sealed class ExecutionPipeline
{
    private readonly TaskExecutionDelegate? _entry;

    public ExecutionPipeline(IEnumerable<ITaskMiddleware> middleware, TaskRegistry registry)
    {
        var all = middleware.Where(m => m is not NoMiddleware).ToArray();
        if (all.Length == 0)
        {
            return;
        }
        TaskExecutionDelegate next = async context =>
        {
            // A middleware may have renamed the task: resolve the handler from the message as it reaches the end.
            if (!registry.TryGet(context.Message.Task, out var descriptor))
            {
                throw new InvalidOperationException($"No handler is registered for task '{context.Message.Task}'.");
            }
            var handlerContext = new TaskContext(context.Message, context.Attempt, context.IsRedelivery);
            context.Result = await descriptor.InvokeAsync(context.Services, handlerContext, context.Message.Args, context.CancellationToken).ConfigureAwait(false);
        };
        for (var i = all.Length - 1; i >= 0; i--)
        {
            var current = all[i];
            var inner = next;
            next = context => current.InvokeAsync(context, inner);
        }
        _entry = next;
    }

    /// <summary>True when no middleware is registered: the worker calls the handler directly.</summary>
    public bool IsEmpty => _entry is null;

    /// <summary>Runs one attempt through the middleware and the handler.</summary>
    public ValueTask RunAsync(TaskExecutionContext context) =>
        _entry is null ? throw new InvalidOperationException("No middleware is registered.") : _entry(context);
}

/// <summary>Stands for a middleware switched off by options (the logging middleware when
/// <see cref="ConveyorOptions.LogTasks"/> is false); left out of the pipeline.</summary>
internal sealed class NoMiddleware : ITaskMiddleware
{
    public static NoMiddleware Instance { get; } = new();

    public ValueTask InvokeAsync(TaskExecutionContext context, TaskExecutionDelegate next) => next(context);
}
