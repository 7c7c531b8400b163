using System.Buffers;
using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Threading.Channels;
using Conveyor.AspNetCore.Requests;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.AspNetCore.Mvc;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Options;

namespace Conveyor.AspNetCore.Endpoints;

/// <summary><c>GET /api/v1/events</c>: task events of every process on the backend, live, as server-sent events.</summary>
internal static class EventEndpoints
{
    public static void Map(ApiGroups api)
    {
        api.Read.MapGet("/events", StreamAsync)
            .WithName("StreamEvents")
            .WithSummary("Task and workflow events of every process, live (text/event-stream)")
            .WithDescription("""
                Each task event is `event: task` with `data:` one JSON object (type, taskId, task, queue, state, attempt, at, workerId,
                durationMs, error, retryAt, origin, and workflowId and stepId for a workflow step's). Each workflow event is
                `event: workflow` with type (created, succeeded, failed, cancelled, retried), workflowId, name, state, at, origin.
                Filters, each a comma-separated list or repeated: `workflow` (workflow ids: their events and their steps'), `queue`,
                `task`, `type` (enqueued, started, succeeded, retrying, dead, cancelled, expired; `failed` = retrying and dead;
                workflow.created, workflow.succeeded, workflow.failed, workflow.cancelled, workflow.retried; `workflow` = all five)
                and `state` (the task's state after the event). `queue`, `task` and `state` select task events only; a `type`
                without a workflow type leaves workflow events out. A comment line every 15 s keeps proxies from closing an idle
                stream. A client that falls more than 1,000 events behind gets `event: overflow` and the stream ends:
                reconnect, and read what was missed from /api/v1/tasks. Events are not stored: Last-Event-ID does not resume.
                """)
            .Produces(StatusCodes.Status200OK, contentType: "text/event-stream")
            .ProducesValidationProblem(StatusCodes.Status400BadRequest);
    }

    private sealed record Filter(HashSet<string>? Queues, HashSet<string>? Tasks, HashSet<TaskEventKind>? Kinds, HashSet<TaskState>? States,
        HashSet<Guid>? Workflows, HashSet<WorkflowEventKind>? WorkflowKinds)
    {
        public bool Matches(WorkflowEvent e) =>
            (Workflows is null || Workflows.Contains(e.WorkflowId))
            && Queues is null && Tasks is null && States is null
            && (Kinds is null && WorkflowKinds is null || WorkflowKinds is not null && WorkflowKinds.Contains(e.Kind));

        public bool Matches(TaskEvent e) =>
            (Workflows is null || (e.WorkflowId is { } workflow && Workflows.Contains(workflow)))
            && (Queues is null || Queues.Contains(e.Queue))
            && (Tasks is null || Tasks.Contains(e.Task))
            && (Kinds is null && WorkflowKinds is null || Kinds is not null && Kinds.Contains(e.Kind))
            && (States is null || States.Contains(e.State));
    }

    private static HashSet<string>? Values(HttpRequest request, string name)
    {
        var values = request.Query[name]
            .SelectMany(v => (v ?? "").Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
            .ToHashSet(StringComparer.Ordinal);
        return values.Count == 0 ? null : values;
    }

    private static Filter? ReadFilter(HttpRequest request, List<FieldError> errors)
    {
        HashSet<TaskEventKind>? kinds = null;
        HashSet<WorkflowEventKind>? workflowKinds = null;
        if (Values(request, "type") is { } types)
        {
            foreach (var type in types)
            {
                if (string.Equals(type, "workflow", StringComparison.OrdinalIgnoreCase))
                {
                    (workflowKinds ??= []).UnionWith(Enum.GetValues<WorkflowEventKind>());
                }
                else if (type.StartsWith("workflow.", StringComparison.OrdinalIgnoreCase))
                {
                    if (WorkflowEventKinds.TryParseApiName(type["workflow.".Length..], out var workflowKind))
                    {
                        (workflowKinds ??= []).Add(workflowKind);
                    }
                    else
                    {
                        errors.Add(new FieldError("type", $"'{type}' is not a workflow event type; use workflow.created, workflow.succeeded, workflow.failed, workflow.cancelled, workflow.retried or workflow."));
                    }
                }
                else if (string.Equals(type, "failed", StringComparison.OrdinalIgnoreCase))
                {
                    (kinds ??= []).Add(TaskEventKind.Retrying);
                    kinds.Add(TaskEventKind.Dead);
                }
                else if (TaskEventKinds.TryParseApiName(type, out var kind))
                {
                    (kinds ??= []).Add(kind);
                }
                else
                {
                    errors.Add(new FieldError("type", $"'{type}' is not an event type; use enqueued, started, succeeded, retrying, dead, cancelled, expired, failed, or workflow.created, workflow.succeeded, workflow.failed, workflow.cancelled, workflow.retried, workflow."));
                }
            }
        }
        HashSet<TaskState>? states = null;
        if (Values(request, "state") is { } stateNames)
        {
            states = [];
            foreach (var name in stateNames)
            {
                if (TaskStates.TryParseApiName(name, out var state))
                {
                    states.Add(state);
                }
                else
                {
                    errors.Add(new FieldError("state", $"'{name}' is not a state; use {string.Join(", ", Enum.GetValues<TaskState>().Select(s => s.ToApiName()))}."));
                }
            }
        }
        var queues = Values(request, "queue");
        foreach (var queue in queues ?? [])
        {
            if (!QueueNames.IsValid(queue))
            {
                errors.Add(new FieldError("queue", $"'{queue}' is not a queue name: 1 to {QueueNames.MaxLength} letters, digits, '.', '-' or '_'."));
            }
        }
        HashSet<Guid>? workflows = null;
        foreach (var workflow in Values(request, "workflow") ?? [])
        {
            if (Guid.TryParse(workflow, out var workflowId))
            {
                (workflows ??= []).Add(workflowId);
            }
            else
            {
                errors.Add(new FieldError("workflow", $"'{workflow}' is not a workflow id (a UUID)."));
            }
        }
        return errors.Count > 0 ? null : new Filter(queues, Values(request, "task"), kinds, states, workflows, workflowKinds);
    }

    private static async Task<IResult> StreamAsync(HttpContext http, [FromServices] TaskEventBus bus,
        [FromServices] IOptions<ConveyorApiOptions> options, [FromServices] IHostApplicationLifetime lifetime, CancellationToken requestAborted)
    {
        // A stream lasts until the client leaves or the server stops (which would otherwise wait for it to end).
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(requestAborted, lifetime.ApplicationStopping);
        var cancellationToken = stop.Token;
        var errors = new List<FieldError>();
        var filter = ReadFilter(http.Request, errors);
        if (filter is null)
        {
            return ApiProblems.Fields(StatusCodes.Status400BadRequest, errors);
        }
        var settings = options.Value;
        var bufferSize = Math.Max(1, settings.EventStreamBuffer);
        // The client's own buffer: a client that reads slower than events come is dropped, never buffered without end.
        // FullMode Wait: TryWrite answers false when the buffer is full (DropWrite would answer true and drop the event
        // silently, so the overflow would never be seen); nothing ever waits, as only TryWrite is called.
        // Task and workflow events, in the order they came.
        var pending = Channel.CreateBounded<object>(new BoundedChannelOptions(bufferSize) { SingleReader = true, FullMode = BoundedChannelFullMode.Wait });
        var overflowed = false;
        void Write(object e)
        {
            if (!pending.Writer.TryWrite(e))
            {
                overflowed = true;
                pending.Writer.TryComplete();
            }
        }
        using var subscription = bus.Subscribe(e =>
        {
            if (filter.Matches(e))
            {
                Write(e);
            }
        }, includeRemote: true);
        // Subscribed only when the filter can pass a workflow event: while one is subscribed, the processes read their
        // workflows' states at step ends.
        using var workflowSubscription = filter.Queues is null && filter.Tasks is null && filter.States is null
            && (filter.Kinds is null || filter.WorkflowKinds is not null)
            ? bus.SubscribeWorkflows(e =>
            {
                if (filter.Matches(e))
                {
                    Write(e);
                }
            }, includeRemote: true)
            : null;

        var response = http.Response;
        response.StatusCode = StatusCodes.Status200OK;
        response.ContentType = "text/event-stream";
        response.Headers.CacheControl = "no-cache";
        // nginx buffers proxied responses unless told not to.
        response.Headers["X-Accel-Buffering"] = "no";
        http.Features.Get<IHttpResponseBodyFeature>()?.DisableBuffering();

        var body = response.BodyWriter;
        var json = new ArrayBufferWriter<byte>(512);
        long sequence = 0;
        try
        {
            await body.WriteAsync(Encoding.UTF8.GetBytes($"retry: 3000\n: connected, buffer {bufferSize} events\n\n"), cancellationToken).ConfigureAwait(false);
            await body.FlushAsync(cancellationToken).ConfigureAwait(false);
            var reader = pending.Reader;
            Task<bool>? next = null;
            while (true)
            {
                next ??= reader.WaitToReadAsync(cancellationToken).AsTask();
                bool more;
                try
                {
                    more = await next.WaitAsync(settings.EventStreamHeartbeat, cancellationToken).ConfigureAwait(false);
                }
                catch (TimeoutException)
                {
                    // Nothing for a while: a comment line, so that proxies and load balancers keep the stream open.
                    await body.WriteAsync(": heartbeat\n\n"u8.ToArray(), cancellationToken).ConfigureAwait(false);
                    await body.FlushAsync(cancellationToken).ConfigureAwait(false);
                    continue;
                }
                next = null;
                if (!more)
                {
                    break;
                }
                while (reader.TryRead(out var item))
                {
                    json.ResetWrittenCount();
                    string name;
                    using (var writer = new Utf8JsonWriter(json))
                    {
                        if (item is WorkflowEvent workflowEvent)
                        {
                            WorkflowEventKinds.Write(writer, workflowEvent);
                            name = "workflow";
                        }
                        else
                        {
                            TaskEventJson.Write(writer, (TaskEvent)item);
                            name = "task";
                        }
                    }
                    sequence++;
                    body.Write(Encoding.UTF8.GetBytes($"id: {sequence.ToString(CultureInfo.InvariantCulture)}\nevent: {name}\ndata: "));
                    body.Write(json.WrittenSpan);
                    body.Write("\n\n"u8);
                }
                await body.FlushAsync(cancellationToken).ConfigureAwait(false);
            }
            if (overflowed)
            {
                await body.WriteAsync(Encoding.UTF8.GetBytes(
                    $"event: overflow\ndata: {{\"reason\":\"The client fell more than {bufferSize} events behind; reconnect and read what was missed from /api/v1/tasks.\",\"buffer\":{bufferSize}}}\n\n"),
                    cancellationToken).ConfigureAwait(false);
                await body.FlushAsync(cancellationToken).ConfigureAwait(false);
            }
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            // The client went away or the server is stopping.
        }
        catch (IOException) when (requestAborted.IsCancellationRequested)
        {
            // The connection broke while a write was under way.
        }
        return Results.Empty;
    }
}
