using System.Diagnostics;

namespace Conveyor;

/// <summary>W3C trace context in message headers: written at enqueue from the current activity, read at each attempt.</summary>
internal static class TraceContext
{
    /// <summary>Gives each message without a <c>traceparent</c> header the current activity's trace context (the
    /// enqueue's span, an HTTP request's activity, or a handler's attempt), so that its attempts, retries and the tasks
    /// they enqueue join that trace. Nothing is written without a current activity, nor, unless
    /// <paramref name="unsampledToo"/>, when its trace is not sampled.</summary>
    public static void Inject(TaskMessage[] messages, bool unsampledToo = true)
    {
        if (Activity.Current is not { } current || (!unsampledToo && !current.Recorded))
        {
            return;
        }
        Dictionary<string, string>? context = null;
        DistributedContextPropagator.Current.Inject(current, null, (_, name, value) =>
        {
            if (value is not null)
            {
                (context ??= new Dictionary<string, string>(StringComparer.Ordinal))[name] = value;
            }
        });
        if (context is null || !context.ContainsKey(ConveyorDiagnostics.TraceParentHeader))
        {
            return;
        }
        for (var i = 0; i < messages.Length; i++)
        {
            var message = messages[i];
            if (message.Headers is { } existing && existing.ContainsKey(ConveyorDiagnostics.TraceParentHeader))
            {
                // The caller carried its own context across (a message enqueued on behalf of another system's trace).
                continue;
            }
            if (message.Headers is not { } given)
            {
                // Messages without headers of their own share the one dictionary (headers are read-only once enqueued;
                // whoever changes them makes a copy): a batch of 1,000 costs one, not 1,000.
                messages[i] = message with { Headers = context };
                continue;
            }
            var headers = new Dictionary<string, string>(given, StringComparer.Ordinal);
            foreach (var (name, value) in context)
            {
                headers.TryAdd(name, value);
            }
            messages[i] = message with { Headers = headers };
        }
    }

    /// <summary>The message's <c>traceparent</c> and <c>tracestate</c> headers, or null.</summary>
    public static string? ParentOf(TaskMessage message, out string? traceState)
    {
        traceState = null;
        if (message.Headers is not { } headers || !headers.TryGetValue(ConveyorDiagnostics.TraceParentHeader, out var traceParent))
        {
            return null;
        }
        headers.TryGetValue(ConveyorDiagnostics.TraceStateHeader, out traceState);
        return traceParent;
    }
}
