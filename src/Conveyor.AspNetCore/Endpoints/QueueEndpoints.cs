using System.Globalization;
using Conveyor.AspNetCore.Audit;
using Conveyor.AspNetCore.Contracts;
using Conveyor.AspNetCore.Requests;
using Conveyor.AspNetCore.Security;
using Conveyor.AspNetCore.Stats;
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
            .WithDescription("Finished states are counted over the newest 50,000 tasks at most: a state in lowerBounds has at least its count; " +
                "exact=true counts every task, at the cost of reading every row. maxAge (an ISO 8601 duration or seconds, up to 60 s; default 0) " +
                "lets the server answer with counts read up to that long before the request, shared with other requests; with 0 they were " +
                "read after the request arrived.")
            .ProducesProblem(StatusCodes.Status400BadRequest)
            .WithQueueAccess(QueueAccessKind.Filtered);
        api.Admin.MapPost("/queues/{name}/pause", (string name, IConveyorBackend backend, SharedQueueCounts counts, CancellationToken cancellationToken) =>
                SetPausedAsync(name, paused: true, backend, counts, cancellationToken))
            .WithQueueAccess(QueueAccessKind.RouteQueue)
            .WithName("PauseQueue")
            .WithSummary("Keep workers from fetching from a queue; enqueues still succeed")
            .ProducesValidationProblem(StatusCodes.Status400BadRequest)
            .Audited("queue.pause", "name");
        api.Admin.MapPost("/queues/{name}/resume", (string name, IConveyorBackend backend, SharedQueueCounts counts, CancellationToken cancellationToken) =>
                SetPausedAsync(name, paused: false, backend, counts, cancellationToken))
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

    private static async Task<Results<Ok<List<QueueResource>>, ProblemHttpResult>> ListQueuesAsync(HttpContext http, [FromQuery] string? maxAge,
        [FromQuery] string? exact, [FromServices] SharedQueueCounts counts, CancellationToken cancellationToken)
    {
        var age = TimeSpan.Zero;
        if (maxAge is not null && ReadMaxAge(maxAge, out age) is { } problem)
        {
            return ApiProblems.Field(StatusCodes.Status400BadRequest, "maxAge", problem);
        }
        var everything = false;
        if (exact is not null && !bool.TryParse(exact, out everything))
        {
            return ApiProblems.Field(StatusCodes.Status400BadRequest, "exact", $"'{exact}' is not true or false");
        }
        var queues = await counts.ReadAsync(age, everything, cancellationToken).ConfigureAwait(false);
        // A key limited to named queues sees those only.
        var allowed = ApiQueueAccess.LimitedTo(http.User);
        return TypedResults.Ok(queues.Where(q => allowed.Count == 0 || allowed.Contains(q.Name)).Select(QueueResource.From).ToList());
    }

    /// <summary>Reads <c>maxAge</c>: an ISO 8601 duration or a number of seconds, 0 to <see cref="SharedQueueCounts.MaxAllowedAge"/>.
    /// Returns the problem, or null.</summary>
    internal static string? ReadMaxAge(string text, out TimeSpan age)
    {
        age = TimeSpan.Zero;
        if (double.TryParse(text, NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out var seconds) && double.IsFinite(seconds))
        {
            if (seconds > SharedQueueCounts.MaxAllowedAge.TotalSeconds)
            {
                return $"{text} is over {SharedQueueCounts.MaxAllowedAge.TotalSeconds} seconds";
            }
            age = TimeSpan.FromSeconds(seconds);
            return null;
        }
        if (ApiValues.TryParseDuration(text, out var duration) is { } problem)
        {
            return problem + ", or a number of seconds";
        }
        if (duration < TimeSpan.Zero || duration > SharedQueueCounts.MaxAllowedAge)
        {
            return $"'{text}' is outside 0 to {SharedQueueCounts.MaxAllowedAge.TotalSeconds} seconds";
        }
        age = duration;
        return null;
    }

    private static async Task<Results<Ok<QueueResource>, ProblemHttpResult>> SetPausedAsync(
        string name, bool paused, IConveyorBackend backend, SharedQueueCounts counts, CancellationToken cancellationToken)
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
        // Read after the change: the answer, and the shared counts from now on, show it.
        var queues = await counts.ReadAsync(TimeSpan.Zero, exact: false, cancellationToken).ConfigureAwait(false);
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
