using Conveyor.AspNetCore.Requests;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;

namespace Conveyor.AspNetCore.Security;

/// <summary>How an endpoint tells which queue a request touches, for keys limited to named queues.</summary>
internal enum QueueAccessKind
{
    /// <summary>It spans every queue (workers, schedules, stats, events, workflows, bulk actions, keys): refused to a
    /// queue-limited key. The default of an endpoint that says nothing.</summary>
    AllQueues,
    /// <summary>The route's <c>{name}</c> is the queue.</summary>
    RouteQueue,
    /// <summary>The query's <c>queue</c> is the queue, and must be given.</summary>
    QueryQueue,
    /// <summary>The route's <c>{id}</c> is a task; a task on another queue is answered 404, as if it did not exist.</summary>
    TaskId,
    /// <summary>The handler checks each task of the body (enqueue).</summary>
    InHandler,
    /// <summary>Lists of queues: the handler shows only the allowed ones.</summary>
    Filtered,
}

/// <summary>Endpoint metadata: how <see cref="QueueAccessEndpointFilter"/> finds the queue.</summary>
internal sealed record QueueAccessMetadata(QueueAccessKind Kind);

/// <summary>
/// Holds keys limited to named queues (<see cref="ApiScopes.QueueClaim"/>) to those queues: what an endpoint touches is
/// read as its <see cref="QueueAccessMetadata"/> says; an endpoint that spans every queue is refused (403). Keys without
/// queue limits, and a server without keys, pass untouched.
/// </summary>
internal sealed class QueueAccessEndpointFilter : IEndpointFilter
{
    public async ValueTask<object?> InvokeAsync(EndpointFilterInvocationContext context, EndpointFilterDelegate next)
    {
        ArgumentNullException.ThrowIfNull(context);
        ArgumentNullException.ThrowIfNull(next);
        var http = context.HttpContext;
        var allowed = ApiQueueAccess.LimitedTo(http.User);
        if (allowed.Count == 0)
        {
            return await next(context).ConfigureAwait(false);
        }
        var kind = http.GetEndpoint()?.Metadata.GetMetadata<QueueAccessMetadata>()?.Kind ?? QueueAccessKind.AllQueues;
        var list = string.Join(", ", allowed.Order(StringComparer.Ordinal));
        switch (kind)
        {
            case QueueAccessKind.AllQueues:
                return Refused($"This API key is limited to the queues {list}; this endpoint spans every queue.");
            case QueueAccessKind.RouteQueue:
                var name = http.Request.RouteValues["name"] as string ?? "";
                if (!allowed.Contains(name))
                {
                    return Refused($"This API key is limited to the queues {list}, not '{name}'.");
                }
                break;
            case QueueAccessKind.QueryQueue:
                var queue = http.Request.Query["queue"].ToString();
                if (!allowed.Contains(queue))
                {
                    return Refused($"This API key is limited to the queues {list}: name one of them with ?queue=.");
                }
                break;
            case QueueAccessKind.TaskId:
                if (Guid.TryParse(http.Request.RouteValues["id"] as string, out var id))
                {
                    var task = await http.RequestServices.GetRequiredService<ITaskClient>().GetAsync(id, http.RequestAborted).ConfigureAwait(false);
                    if (task is not null && !allowed.Contains(task.Queue))
                    {
                        return ApiProblems.TaskNotFound(id);
                    }
                }
                break;
            default:
                break;
        }
        return await next(context).ConfigureAwait(false);
    }

    private static Microsoft.AspNetCore.Http.HttpResults.ProblemHttpResult Refused(string detail) =>
        ApiProblems.Status(StatusCodes.Status403Forbidden, "Forbidden.", detail);
}

/// <summary>The enqueue handlers' check: the queue each task would land on, as the client picks it.</summary>
internal static class EnqueueQueueAccess
{
    /// <summary>A 403 problem when a task of <paramref name="requests"/> would land on a queue the caller may not use; null otherwise.</summary>
    public static Microsoft.AspNetCore.Http.HttpResults.ProblemHttpResult? Check(HttpContext http, IEnumerable<TaskRequest> requests, TaskRegistry registry)
    {
        var allowed = ApiQueueAccess.LimitedTo(http.User);
        if (allowed.Count == 0)
        {
            return null;
        }
        foreach (var request in requests)
        {
            var queue = request.Options?.Queue ?? (registry.TryGet(request.Task, out var descriptor) ? descriptor.Defaults.Queue : null) ?? QueueNames.Default;
            if (!allowed.Contains(queue))
            {
                return ApiProblems.Status(StatusCodes.Status403Forbidden, "Forbidden.",
                    $"This API key is limited to the queues {string.Join(", ", allowed.Order(StringComparer.Ordinal))}, not '{queue}' (task {request.Task}).");
            }
        }
        return null;
    }
}

/// <summary>Marks endpoints with <see cref="QueueAccessMetadata"/>.</summary>
internal static class QueueAccessExtensions
{
    public static RouteHandlerBuilder WithQueueAccess(this RouteHandlerBuilder builder, QueueAccessKind kind) =>
        builder.WithMetadata(new QueueAccessMetadata(kind));
}
