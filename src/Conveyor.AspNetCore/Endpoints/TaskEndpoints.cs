using System.Text.Json;
using Conveyor.AspNetCore.Audit;
using Conveyor.AspNetCore.Contracts;
using Conveyor.AspNetCore.Requests;
using Conveyor.AspNetCore.Search;
using Conveyor.AspNetCore.Security;
using Conveyor.Backends;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.AspNetCore.Mvc;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.Options;

namespace Conveyor.AspNetCore.Endpoints;

/// <summary><c>/api/v1/tasks</c>: enqueue, read, list, cancel and retry; bulk retry and purge by filter.</summary>
internal static class TaskEndpoints
{
    /// <summary>Header of a 200 answer to an enqueue that returned an existing task: which key matched.</summary>
    public const string DeduplicatedHeader = "Conveyor-Deduplicated";

    public static void Map(ApiGroups api)
    {
        api.Enqueue.MapPost("/tasks", EnqueueAsync)
            .WithQueueAccess(QueueAccessKind.InHandler)
            .WithName("EnqueueTask")
            .WithSummary("Enqueue one task")
            .WithDescription("201 with the new task; 200 with the existing task when the idempotency key matched.")
            .Accepts<EnqueueTaskBody>("application/json")
            .ProducesProblem(StatusCodes.Status400BadRequest)
            .ProducesProblem(StatusCodes.Status413PayloadTooLarge)
            .ProducesValidationProblem(StatusCodes.Status422UnprocessableEntity);
        api.Enqueue.MapPost("/tasks/batch", EnqueueBatchAsync)
            .WithQueueAccess(QueueAccessKind.InHandler)
            .WithName("EnqueueTasks")
            .WithSummary("Enqueue many tasks, all or none")
            .Accepts<EnqueueBatchBody>("application/json")
            .ProducesProblem(StatusCodes.Status400BadRequest)
            .ProducesProblem(StatusCodes.Status413PayloadTooLarge)
            .ProducesValidationProblem(StatusCodes.Status422UnprocessableEntity);
        api.Admin.MapPost("/tasks/retry", RetryManyAsync)
            .WithName("RetryTasks")
            .WithSummary("Queue again, with fresh attempts, every dead (or cancelled, or expired) task matching a filter")
            .WithDescription("200 with how many were queued again. Works a page at a time (Conveyor:BulkBatchSize), never in one transaction.")
            .Accepts<TaskFilterBody>("application/json")
            .ProducesProblem(StatusCodes.Status400BadRequest)
            .ProducesProblem(StatusCodes.Status413PayloadTooLarge)
            .ProducesValidationProblem(StatusCodes.Status422UnprocessableEntity)
            .Audited("tasks.retry-many");
        api.Admin.MapPost("/tasks/purge", PurgeAsync)
            .WithName("PurgeTasks")
            .WithSummary("Delete every dead (or cancelled, expired, succeeded) task matching a filter")
            .WithDescription("200 with how many were deleted. Works a page at a time (Conveyor:BulkBatchSize), never in one transaction.")
            .Accepts<TaskFilterBody>("application/json")
            .ProducesProblem(StatusCodes.Status400BadRequest)
            .ProducesProblem(StatusCodes.Status413PayloadTooLarge)
            .ProducesValidationProblem(StatusCodes.Status422UnprocessableEntity)
            .Audited("tasks.purge");
        api.Read.MapGet("/tasks/{id}", GetAsync)
            .WithQueueAccess(QueueAccessKind.TaskId)
            .WithName("GetTask")
            .WithSummary("A task's state, arguments, result, errors and history")
            .ProducesProblem(StatusCodes.Status400BadRequest)
            .ProducesProblem(StatusCodes.Status404NotFound);
        api.Read.MapGet("/tasks", ListAsync)
            .WithQueueAccess(QueueAccessKind.QueryQueue)
            .WithName("ListTasks")
            .WithSummary("Tasks matching a filter, newest first, a page at a time")
            .ProducesValidationProblem(StatusCodes.Status400BadRequest);
        api.Admin.MapPost("/tasks/{id}/cancel", CancelAsync)
            .WithQueueAccess(QueueAccessKind.TaskId)
            .WithName("CancelTask")
            .WithSummary("Cancel a waiting task, or ask a running one to stop")
            .WithDescription("200 when cancelled; 202 when it is running and its worker will cancel it at its next heartbeat; 409 when it already finished.")
            .ProducesProblem(StatusCodes.Status400BadRequest)
            .ProducesProblem(StatusCodes.Status404NotFound)
            .ProducesProblem(StatusCodes.Status409Conflict)
            .Audited("task.cancel", "id");
        api.Admin.MapPost("/tasks/{id}/retry", RetryAsync)
            .WithQueueAccess(QueueAccessKind.TaskId)
            .WithName("RetryTask")
            .WithSummary("Queue a dead, cancelled or expired task again with a fresh set of attempts")
            .ProducesProblem(StatusCodes.Status400BadRequest)
            .ProducesProblem(StatusCodes.Status404NotFound)
            .ProducesProblem(StatusCodes.Status409Conflict)
            .Audited("task.retry", "id");
    }

    // The body is read here, not bound by the framework, so that an oversized body is a 413 problem
    // and malformed JSON a 400 that says where it broke.
    internal static async Task<(JsonDocument? Document, ProblemHttpResult? Problem)> ReadJsonBodyAsync(
        HttpContext http, ConveyorApiOptions options, CancellationToken cancellationToken)
    {
        var limit = options.MaxRequestBodySize;
        ReadOnlyMemory<byte>? body;
        try
        {
            body = await RequestBodyReader.ReadAsync(http.Request, limit, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is BadHttpRequestException or IOException)
        {
            // The client broke off its body (it gave up, or its connection dropped), or sent framing Kestrel cannot
            // read (a chunk size that overflows is an IOException, not a BadHttpRequestException): a bad request, not a
            // server error.
            return (null, RequestBodyReader.Incomplete(ex));
        }
        if (body is null)
        {
            return (null, RequestBodyReader.TooLarge(limit));
        }
        var malformed = EnqueueRequestReader.TryParse(body.Value, out var document);
        return (document, malformed);
    }

    private static async Task<Results<Created<TaskResource>, Ok<TaskResource>, ProblemHttpResult>> EnqueueAsync(
        HttpContext http, [FromServices] ITaskClient client, [FromServices] EnqueueRequestReader reader, [FromServices] DeclaredTasks declared,
        [FromServices] TaskRegistry registry, [FromServices] IOptions<ConveyorApiOptions> options, CancellationToken cancellationToken)
    {
        var (document, problem) = await ReadJsonBodyAsync(http, options.Value, cancellationToken).ConfigureAwait(false);
        if (problem is not null)
        {
            return problem;
        }
        using (document)
        {
            var errors = new List<FieldError>();
            var request = reader.ReadTask(document!.RootElement, "", errors);
            if (errors.Count > 0 && await declared.ResolveAsync(errors, _ => request?.ArgsJson, cancellationToken).ConfigureAwait(false))
            {
                return ApiProblems.Fields(StatusCodes.Status422UnprocessableEntity, errors);
            }
            if (EnqueueQueueAccess.Check(http, [request!], registry) is { } refused)
            {
                return refused;
            }
            EnqueueResult result;
            try
            {
                result = await client.EnqueueAsync(request!, cancellationToken).ConfigureAwait(false);
            }
            catch (TaskValidationException ex)
            {
                return ApiProblems.Fields(StatusCodes.Status422UnprocessableEntity, ex.Errors);
            }
            if (result.Created && result.Message is { } message)
            {
                // The hot path: answer from the message just stored, without a read back (a fifth of the server's CPU under load).
                return TypedResults.Created(TaskLocation(http, result.Id), TaskResource.FromNew(message, result.State));
            }
            // The idempotency key or the unique key matched: show the existing task as GET does, and say which key matched.
            // Null only if retention deleted it in between.
            http.Response.Headers[DeduplicatedHeader] = result.MatchedUniqueKey ? "uniqueKey" : "idempotencyKey";
            var record = await client.GetAsync(result.Id, cancellationToken).ConfigureAwait(false);
            var resource = record is null
                ? new TaskResource { Id = result.Id, Task = request!.Task, Queue = request.Options?.Queue ?? QueueNames.Default, State = result.State }
                : TaskResource.From(record);
            return result.Created
                ? TypedResults.Created(TaskLocation(http, result.Id), resource)
                : TypedResults.Ok(resource);
        }
    }

    private static async Task<Results<Created<BatchResource>, ProblemHttpResult>> EnqueueBatchAsync(
        HttpContext http, [FromServices] ITaskClient client, [FromServices] EnqueueRequestReader reader, [FromServices] DeclaredTasks declared,
        [FromServices] TaskRegistry registry, [FromServices] IOptions<ConveyorApiOptions> options, CancellationToken cancellationToken)
    {
        var (document, problem) = await ReadJsonBodyAsync(http, options.Value, cancellationToken).ConfigureAwait(false);
        if (problem is not null)
        {
            return problem;
        }
        using (document)
        {
            var errors = new List<FieldError>();
            JsonElement tasks = default;
            foreach (var property in document!.RootElement.EnumerateObject())
            {
                if (property.Name == "tasks")
                {
                    tasks = property.Value;
                }
                else
                {
                    errors.Add(new(property.Name, "is not a field of a batch; send {\"tasks\": [...]}"));
                }
            }
            var maxBatch = options.Value.MaxBatchSize;
            if (tasks.ValueKind != JsonValueKind.Array)
            {
                errors.Add(new("tasks", "is required: an array of tasks, each as for POST /api/v1/tasks"));
            }
            else if (tasks.GetArrayLength() == 0)
            {
                errors.Add(new("tasks", "must hold at least one task"));
            }
            else if (tasks.GetArrayLength() > maxBatch)
            {
                errors.Add(new("tasks", $"holds {tasks.GetArrayLength()} tasks; at most {maxBatch} fit in one batch (Conveyor:MaxBatchSize)"));
            }
            if (errors.Count > 0)
            {
                return ApiProblems.Fields(StatusCodes.Status422UnprocessableEntity, errors);
            }
            var requests = new List<TaskRequest>(tasks.GetArrayLength());
            // Each task by its index, for checks of its arguments against a remote worker's schema (fields "tasks[3].…").
            var byIndex = new TaskRequest?[tasks.GetArrayLength()];
            var index = 0;
            foreach (var element in tasks.EnumerateArray())
            {
                if (reader.ReadTask(element, $"tasks[{index}].", errors) is { } request)
                {
                    requests.Add(request);
                    byIndex[index] = request;
                }
                index++;
            }
            if (errors.Count > 0 && await declared.ResolveAsync(errors, prefix => byIndex[BatchIndex(prefix)]?.ArgsJson, cancellationToken).ConfigureAwait(false))
            {
                return ApiProblems.Fields(StatusCodes.Status422UnprocessableEntity, errors);
            }
            if (EnqueueQueueAccess.Check(http, requests, registry) is { } refused)
            {
                return refused;
            }
            IReadOnlyList<EnqueueResult> results;
            try
            {
                results = await client.EnqueueManyAsync(requests, cancellationToken).ConfigureAwait(false);
            }
            catch (TaskValidationException ex)
            {
                return ApiProblems.Fields(StatusCodes.Status422UnprocessableEntity, ex.Errors);
            }
            return TypedResults.Created((string?)null, new BatchResource(results.Select(r => r.Id).ToList()));
        }
    }

    /// <summary>The index in <c>tasks[3].</c>.</summary>
    private static int BatchIndex(string prefix) =>
        int.Parse(prefix.AsSpan("tasks[".Length, prefix.IndexOf(']', StringComparison.Ordinal) - "tasks[".Length), System.Globalization.CultureInfo.InvariantCulture);

    private static async Task<Results<Ok<BulkRetryResource>, ProblemHttpResult>> RetryManyAsync(
        HttpContext http, [FromServices] ITaskClient client, [FromServices] IOptions<ConveyorApiOptions> options, CancellationToken cancellationToken)
    {
        var (filter, problem) = await ReadFilterAsync(http, options.Value, purge: false, cancellationToken).ConfigureAwait(false);
        if (problem is not null)
        {
            return problem;
        }
        try
        {
            return TypedResults.Ok(new BulkRetryResource(await client.RetryManyAsync(filter!, cancellationToken).ConfigureAwait(false)));
        }
        catch (TaskValidationException ex)
        {
            return ApiProblems.Fields(StatusCodes.Status422UnprocessableEntity, ex.Errors);
        }
    }

    private static async Task<Results<Ok<BulkPurgeResource>, ProblemHttpResult>> PurgeAsync(
        HttpContext http, [FromServices] ITaskClient client, [FromServices] IOptions<ConveyorApiOptions> options, CancellationToken cancellationToken)
    {
        var (filter, problem) = await ReadFilterAsync(http, options.Value, purge: true, cancellationToken).ConfigureAwait(false);
        if (problem is not null)
        {
            return problem;
        }
        try
        {
            return TypedResults.Ok(new BulkPurgeResource(await client.PurgeAsync(filter!, cancellationToken).ConfigureAwait(false)));
        }
        catch (TaskValidationException ex)
        {
            return ApiProblems.Fields(StatusCodes.Status422UnprocessableEntity, ex.Errors);
        }
    }

    private static async Task<(TaskFilter? Filter, ProblemHttpResult? Problem)> ReadFilterAsync(
        HttpContext http, ConveyorApiOptions options, bool purge, CancellationToken cancellationToken)
    {
        var (document, problem) = await ReadJsonBodyAsync(http, options, cancellationToken).ConfigureAwait(false);
        if (problem is not null)
        {
            return (null, problem);
        }
        using (document)
        {
            var errors = new List<FieldError>();
            var filter = TaskFilterReader.Read(document!.RootElement, purge, errors);
            return errors.Count > 0 ? (null, ApiProblems.Fields(StatusCodes.Status422UnprocessableEntity, errors)) : (filter, null);
        }
    }

    private static async Task<Results<Ok<TaskResource>, ProblemHttpResult>> GetAsync(
        string id, [FromServices] ITaskClient client, CancellationToken cancellationToken)
    {
        if (ParseId(id) is not { } taskId)
        {
            return MalformedId(id);
        }
        var record = await client.GetAsync(taskId, cancellationToken).ConfigureAwait(false);
        return record is null ? ApiProblems.TaskNotFound(taskId) : TypedResults.Ok(TaskResource.From(record));
    }

    private static async Task<Results<Ok<TaskPageResource>, ProblemHttpResult>> ListAsync(
        string? state, string? task, string? queue, string? cursor, string? limit, string? createdAfter, string? createdBefore, string? text,
        [FromServices] IConveyorBackend backend, [FromServices] IOptions<ConveyorApiOptions> options, [FromServices] TimeProvider time,
        CancellationToken cancellationToken)
    {
        var errors = new List<FieldError>();
        var after = ReadQueryTime(createdAfter, "createdAfter", errors);
        var before = ReadQueryTime(createdBefore, "createdBefore", errors);
        if (after is { } a && before is { } b && a >= b)
        {
            errors.Add(new("createdBefore", $"must be after createdAfter ({a:O})"));
        }
        if (text is { Length: > TaskSearch.MaxTextLength })
        {
            errors.Add(new("text", $"is {text.Length} characters long; at most {TaskSearch.MaxTextLength}"));
        }
        TaskState? stateFilter = null;
        if (!string.IsNullOrEmpty(state))
        {
            if (TaskStates.TryParseApiName(state, out var parsed))
            {
                stateFilter = parsed;
            }
            else
            {
                errors.Add(new("state", $"'{state}' is not a state; one of {string.Join(", ", Enum.GetValues<TaskState>().Select(s => s.ToApiName()))}"));
            }
        }
        if (!string.IsNullOrEmpty(queue) && !QueueNames.IsValid(queue))
        {
            errors.Add(new("queue", $"'{queue}' is not a valid queue name"));
        }
        var pageSize = Math.Clamp(options.Value.DefaultPageSize, 1, 1000);
        if (!string.IsNullOrEmpty(limit) && (!int.TryParse(limit, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out pageSize) || pageSize is < 1 or > 1000))
        {
            errors.Add(new("limit", $"'{limit}' is not a page size from 1 to 1000"));
        }
        if (errors.Count > 0)
        {
            return ApiProblems.Fields(StatusCodes.Status400BadRequest, errors);
        }
        TaskPage page;
        var query = new TaskQuery
        {
            State = stateFilter,
            Task = string.IsNullOrEmpty(task) ? null : task,
            Queue = string.IsNullOrEmpty(queue) ? null : queue,
            Cursor = string.IsNullOrEmpty(cursor) ? null : cursor,
            Limit = pageSize,
        };
        var search = new TaskSearch(after, before, string.IsNullOrEmpty(text) ? null : text);
        try
        {
            page = search.IsEmpty
                ? await backend.Store.ListAsync(query, cancellationToken).ConfigureAwait(false)
                : await search.ListAsync(backend.Store, query, time, cancellationToken).ConfigureAwait(false);
        }
        catch (ArgumentException) when (!string.IsNullOrEmpty(cursor))
        {
            // The store's cursors are opaque; the store rejects one it did not make.
            return ApiProblems.Field(StatusCodes.Status400BadRequest, "cursor", $"'{cursor}' is not a cursor returned by this API");
        }
        return TypedResults.Ok(new TaskPageResource(page.Items.Select(TaskResource.From).ToList(), page.NextCursor));
    }

    private static async Task<Results<Ok<TaskResource>, Accepted<TaskResource>, ProblemHttpResult>> CancelAsync(
        string id, [FromServices] ITaskClient client, CancellationToken cancellationToken)
    {
        if (ParseId(id) is not { } taskId)
        {
            return MalformedId(id);
        }
        var outcome = await client.CancelAsync(taskId, cancellationToken).ConfigureAwait(false);
        if (outcome == CancelOutcome.NotFound)
        {
            return ApiProblems.TaskNotFound(taskId);
        }
        var record = await client.GetAsync(taskId, cancellationToken).ConfigureAwait(false);
        if (record is null)
        {
            return ApiProblems.TaskNotFound(taskId);
        }
        return outcome switch
        {
            CancelOutcome.Cancelled => TypedResults.Ok(TaskResource.From(record)),
            CancelOutcome.Requested => TypedResults.Accepted((string?)null, TaskResource.From(record)),
            _ => ApiProblems.Status(StatusCodes.Status409Conflict, "The task already finished.",
                $"Task {taskId} is {record.State.ToApiName()}; only waiting or running tasks can be cancelled."),
        };
    }

    private static async Task<Results<Ok<TaskResource>, ProblemHttpResult>> RetryAsync(
        string id, [FromServices] ITaskClient client, CancellationToken cancellationToken)
    {
        if (ParseId(id) is not { } taskId)
        {
            return MalformedId(id);
        }
        var outcome = await client.RetryAsync(taskId, cancellationToken).ConfigureAwait(false);
        var record = outcome == RetryOutcome.NotFound ? null : await client.GetAsync(taskId, cancellationToken).ConfigureAwait(false);
        if (record is null)
        {
            return ApiProblems.TaskNotFound(taskId);
        }
        return outcome switch
        {
            RetryOutcome.Requeued => TypedResults.Ok(TaskResource.From(record)),
            RetryOutcome.WorkflowStep => ApiProblems.Status(StatusCodes.Status409Conflict, "The task cannot be retried alone.",
                $"Task {taskId} is a step of workflow {Conveyor.Workflows.WorkflowHeaders.StepOf(record.Headers).WorkflowId}: retry the workflow " +
                "(POST /api/v1/workflows/{id}/retry), which runs its failed steps again and what waits for them."),
            _ => ApiProblems.Status(StatusCodes.Status409Conflict, "The task cannot be retried.",
                $"Task {taskId} is {record.State.ToApiName()}; only dead, cancelled and expired tasks can be retried."),
        };
    }

    private static DateTimeOffset? ReadQueryTime(string? value, string field, List<FieldError> errors)
    {
        if (string.IsNullOrEmpty(value))
        {
            return null;
        }
        if (ApiValues.TryParseTime(value, out var parsed) is { } problem)
        {
            errors.Add(new(field, problem));
            return null;
        }
        return parsed;
    }

    private static Guid? ParseId(string id) => Guid.TryParse(id, out var parsed) ? parsed : null;

    private static ProblemHttpResult MalformedId(string id) =>
        ApiProblems.Field(StatusCodes.Status400BadRequest, "id", $"'{id}' is not a task id (a UUID such as 0192f0c1-7a3e-7c4d-9b1a-2f4e5d6c7b8a)");

    private static string TaskLocation(HttpContext http, Guid id) => $"{http.Request.PathBase}/api/v1/tasks/{id}";
}
