using Conveyor.AspNetCore.Audit;
using Conveyor.AspNetCore.Contracts;
using Conveyor.AspNetCore.Requests;
using Conveyor.AspNetCore.Security;
using Conveyor.Backends;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.AspNetCore.Mvc;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.Options;

namespace Conveyor.AspNetCore.Endpoints;

/// <summary><c>/api/v1/queues</c> and <c>/api/v1/workers</c>.</summary>
internal static class QueueEndpoints
{
    public static void Map(ApiGroups api)
    {
        api.Read.MapGet("/queues", ListQueuesAsync)
            .WithName("ListQueues")
            .WithSummary("Every known queue with its depth per state and whether it is paused")
            .WithQueueAccess(QueueAccessKind.Filtered);
        api.Admin.MapPost("/queues/{name}/pause", (string name, IConveyorBackend backend, CancellationToken cancellationToken) =>
                SetPausedAsync(name, paused: true, backend, cancellationToken))
            .WithQueueAccess(QueueAccessKind.RouteQueue)
            .WithName("PauseQueue")
            .WithSummary("Keep workers from fetching from a queue; enqueues still succeed")
            .ProducesValidationProblem(StatusCodes.Status400BadRequest)
            .Audited("queue.pause", "name");
        api.Admin.MapPost("/queues/{name}/resume", (string name, IConveyorBackend backend, CancellationToken cancellationToken) =>
                SetPausedAsync(name, paused: false, backend, cancellationToken))
            .WithQueueAccess(QueueAccessKind.RouteQueue)
            .WithName("ResumeQueue")
            .WithSummary("Let workers fetch from a queue again")
            .ProducesValidationProblem(StatusCodes.Status400BadRequest)
            .Audited("queue.resume", "name");
        api.Read.MapGet("/workers", ListWorkersAsync)
            .WithName("ListWorkers")
            .WithSummary("Workers whose heartbeat is recent, with their queues and counters");
        api.Read.MapGet("/tasks/waiting-for-handler", ListWaitingForHandlerAsync)
            .WithName("ListTasksWaitingForHandler")
            .WithSummary("Waiting tasks whose name no live worker declares, counted per task name and queue")
            .WithDescription("They wait, attempts unspent, until a worker with their handler starts (docs/operations.md).");
    }

    private static async Task<Ok<WaitingForHandlerResource>> ListWaitingForHandlerAsync(
        [FromServices] IConveyorBackend backend, [FromServices] IOptions<ConveyorOptions> options, [FromServices] TimeProvider time,
        CancellationToken cancellationToken) =>
        TypedResults.Ok(await WaitingForHandler.ReadAsync(backend, options.Value.Worker, time.GetUtcNow(), cancellationToken).ConfigureAwait(false));

    private static async Task<Ok<List<QueueResource>>> ListQueuesAsync(HttpContext http, [FromServices] IConveyorBackend backend, CancellationToken cancellationToken)
    {
        var queues = await backend.Store.GetQueuesAsync(cancellationToken).ConfigureAwait(false);
        // A key limited to named queues sees those only.
        var allowed = ApiQueueAccess.LimitedTo(http.User);
        return TypedResults.Ok(queues.Where(q => allowed.Count == 0 || allowed.Contains(q.Name)).Select(QueueResource.From).ToList());
    }

    private static async Task<Results<Ok<QueueResource>, ProblemHttpResult>> SetPausedAsync(
        string name, bool paused, IConveyorBackend backend, CancellationToken cancellationToken)
    {
        if (!QueueNames.IsValid(name))
        {
            return ApiProblems.Field(StatusCodes.Status400BadRequest, "name",
                $"'{name}' is not a valid queue name: 1 to {QueueNames.MaxLength} letters, digits, '.', '-' or '_'");
        }
        if (paused)
        {
            await backend.Queue.PauseQueueAsync(name, cancellationToken).ConfigureAwait(false);
        }
        else
        {
            await backend.Queue.ResumeQueueAsync(name, cancellationToken).ConfigureAwait(false);
        }
        var queues = await backend.Store.GetQueuesAsync(cancellationToken).ConfigureAwait(false);
        var stats = queues.FirstOrDefault(q => q.Name == name)
            ?? new QueueStats { Name = name, Paused = paused, Counts = new Dictionary<TaskState, long>() };
        return TypedResults.Ok(QueueResource.From(stats));
    }

    private static async Task<Ok<IReadOnlyList<WorkerInfo>>> ListWorkersAsync(
        [FromServices] IConveyorBackend backend, [FromServices] IOptions<ConveyorOptions> options, [FromServices] TimeProvider time,
        CancellationToken cancellationToken)
    {
        var workers = await WorkerListing.ListAsync(backend.Coordination, options.Value.Worker, time.GetUtcNow(), cancellationToken).ConfigureAwait(false);
        return TypedResults.Ok(workers);
    }
}
