using System.Collections.Concurrent;
using System.Diagnostics;

namespace Conveyor;

/// <summary>
/// Runs each attempt in a span <c>process {task}</c> (kind Consumer) of the <c>Conveyor</c> activity source, child of the
/// span that enqueued the task (the message's <c>traceparent</c> header), so that one trace runs from the request that
/// enqueued a task through each attempt (retries are siblings under the enqueue) to the tasks the handler enqueues.
/// With no listener, or when the sampler drops the span, a message that carries trace context still runs inside a plain
/// activity with that context: logs get its trace id and the tasks it enqueues stay in the trace. A message without
/// context whose new root the sampler drops runs in no activity. With neither a listener nor a context, it costs a
/// check. Registered first by <c>AddConveyor</c> (outermost) unless <see cref="ConveyorOptions.TraceTasks"/> is false.
/// </summary>
internal sealed class TaskTracingMiddleware : ITaskMiddleware
{
    /// <summary>Operation name of the plain activity used when no span is recorded.</summary>
    internal const string PlainActivityName = "Conveyor.Process";

    // Span names by task name ("process flights.score"), built once per name rather than once per attempt; bounded, for a
    // server that accepts any task name over HTTP (past the bound a name is built each time, as before).
    private const int MaxCachedNames = 1024;
    private static readonly ConcurrentDictionary<string, string> SpanNames = new(StringComparer.Ordinal);

    // The attempt tag's boxed values for the common attempts, so that tagging a span does not box an int each time.
    private static readonly object[] BoxedAttempts = [.. Enumerable.Range(0, 33).Select(i => (object)i)];

    public ValueTask InvokeAsync(TaskExecutionContext context, TaskExecutionDelegate next)
    {
        var carried = CarriedContext.Of(context.Message);
        if (!carried.Exists && !ConveyorDiagnostics.ActivitySource.HasListeners())
        {
            return next(context);
        }
        var activity = CreateActivity(context, carried);
        if (activity is null)
        {
            // An attempt the sampler dropped, with no context to carry, runs without a frame of its own (the common case
            // under a ratio sampler for tasks enqueued outside a sampled trace).
            return next(context);
        }
        return RunAsync(context, next, activity);
    }

    private static Activity? CreateActivity(TaskExecutionContext context, CarriedContext carried)
    {
        var message = context.Message;
        var parent = carried.Parent;
        var activity = ConveyorDiagnostics.ActivitySource.CreateActivity(SpanName(message.Task), ActivityKind.Consumer, parent);
        if (activity is { IsAllDataRequested: false } && !carried.Exists)
        {
            // A root the sampler dropped: the OpenTelemetry SDK still asks for an activity to carry its new trace id, which
            // nothing here would read (no context came with the message, no span is recorded). Left unstarted, it costs
            // the attempt no current activity and no listener callbacks.
            return null;
        }
        if (activity is null && carried.Exists)
        {
            // A carrier of the context that nobody records: an activity built by its constructor asks for all data
            // (tags included) unless told otherwise, which here cost eight tags and a string of the id on every attempt.
            activity = new Activity(PlainActivityName) { IsAllDataRequested = false };
            if (carried.Parsed)
            {
                // The ids read above, whose hex strings the activity keeps: given the text instead, it parses it again.
                activity.SetParentId(parent.TraceId, parent.SpanId, parent.TraceFlags);
            }
            else
            {
                activity.SetParentId(carried.TraceParent!);
            }
            activity.TraceStateString = carried.TraceState;
        }
        if (activity is { IsAllDataRequested: true })
        {
            // A new span has no tags but a sampler's: AddTag appends without looking for one of the same name first.
            activity.AddTag("messaging.system", "conveyor");
            activity.AddTag("messaging.operation.type", "process");
            activity.AddTag("messaging.destination.name", message.Queue);
            activity.AddTag("messaging.message.id", message.Id.ToString());
            activity.AddTag("conveyor.task", message.Task);
            activity.AddTag("conveyor.attempt", (uint)context.Attempt < (uint)BoxedAttempts.Length ? BoxedAttempts[context.Attempt] : context.Attempt);
            activity.AddTag("conveyor.worker", context.WorkerId);
            if (context.IsRedelivery)
            {
                activity.AddTag("conveyor.redelivery", true);
            }
        }
        return activity;
    }

    private static async ValueTask RunAsync(TaskExecutionContext context, TaskExecutionDelegate next, Activity activity)
    {
        // Started here, in the attempt's own async frame: the caller's context (and its current activity) comes back when
        // this frame returns or first yields, without setting Activity.Current back by hand (a copy of the execution
        // context when it holds other async locals).
        activity.Start();
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
            activity.Dispose();
        }
    }

    private static string SpanName(string task)
    {
        if (SpanNames.TryGetValue(task, out var name))
        {
            return name;
        }
        name = "process " + task;
        return SpanNames.Count < MaxCachedNames ? SpanNames.GetOrAdd(task, name) : name;
    }

    /// <summary>The trace context a message carries: from the bytes of a stored trace context (no text made or parsed),
    /// else from its <c>traceparent</c> header's text.</summary>
    private readonly record struct CarriedContext(bool Exists, bool Parsed, ActivityContext Parent, string? TraceParent, string? TraceState)
    {
        public static CarriedContext Of(TaskMessage message)
        {
            if (message.Headers is Backends.TraceContextHeaders stored && stored.TryGetParentContext(out var fromBytes))
            {
                return new CarriedContext(true, true, fromBytes, null, fromBytes.TraceState);
            }
            var traceParent = TraceContext.ParentOf(message, out var traceState);
            if (traceParent is null)
            {
                return default;
            }
            var parsed = ActivityContext.TryParse(traceParent, traceState, isRemote: true, out var parent);
            return new CarriedContext(true, parsed, parent, traceParent, traceState);
        }
    }
}
