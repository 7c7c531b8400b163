using System.Diagnostics;

namespace Conveyor;

/// <summary>
/// Runs each attempt in a span <c>process {task}</c> (kind Consumer) of the <c>Conveyor</c> activity source, child of the
/// span that enqueued the task (the message's <c>traceparent</c> header), so that one trace runs from the request that
/// enqueued a task through each attempt (retries are siblings under the enqueue) to the tasks the handler enqueues.
/// With no listener, or when the sampler drops the span, a message that carries trace context still runs inside a plain
/// activity with that context: logs get its trace id and the tasks it enqueues stay in the trace. With neither, it costs
/// a check. Registered first by <c>AddConveyor</c> (outermost) unless <see cref="ConveyorOptions.TraceTasks"/> is false.
/// </summary>
internal sealed class TaskTracingMiddleware : ITaskMiddleware
{
    /// <summary>Operation name of the plain activity used when no span is recorded.</summary>
    internal const string PlainActivityName = "Conveyor.Process";

    public ValueTask InvokeAsync(TaskExecutionContext context, TaskExecutionDelegate next)
    {
        var traceParent = TraceContext.ParentOf(context.Message, out var traceState);
        if (traceParent is null && !ConveyorDiagnostics.ActivitySource.HasListeners())
        {
            return next(context);
        }
        return RunAsync(context, next, traceParent, traceState);
    }

    private static async ValueTask RunAsync(TaskExecutionContext context, TaskExecutionDelegate next, string? traceParent, string? traceState)
    {
        var message = context.Message;
        ActivityContext.TryParse(traceParent, traceState, isRemote: true, out var parent);
        var activity = ConveyorDiagnostics.ActivitySource.StartActivity($"process {message.Task}", ActivityKind.Consumer, parent);
        if (activity is null && traceParent is not null)
        {
            activity = new Activity(PlainActivityName);
            activity.SetParentId(traceParent);
            activity.TraceStateString = traceState;
            activity.Start();
        }
        if (activity is { IsAllDataRequested: true })
        {
            activity.SetTag("messaging.system", "conveyor");
            activity.SetTag("messaging.operation.type", "process");
            activity.SetTag("messaging.destination.name", message.Queue);
            activity.SetTag("messaging.message.id", message.Id.ToString());
            activity.SetTag("conveyor.task", message.Task);
            activity.SetTag("conveyor.attempt", context.Attempt);
            activity.SetTag("conveyor.worker", context.WorkerId);
            if (context.IsRedelivery)
            {
                activity.SetTag("conveyor.redelivery", true);
            }
        }
        try
        {
            await next(context).ConfigureAwait(false);
        }
        catch (Exception ex) when (activity is { IsAllDataRequested: true } && ex is not SnoozeTaskException)
        {
            activity.SetStatus(ActivityStatusCode.Error, ex.GetType().FullName);
            activity.AddException(ex);
            throw;
        }
        finally
        {
            activity?.Dispose();
        }
    }
}
