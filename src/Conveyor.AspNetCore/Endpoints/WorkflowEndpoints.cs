using Conveyor.AspNetCore.Audit;
using Conveyor.AspNetCore.Contracts;
using Conveyor.AspNetCore.Requests;
using Conveyor.Backends;
using Conveyor.Workflows;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.AspNetCore.Mvc;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.Options;

namespace Conveyor.AspNetCore.Endpoints;

/// <summary><c>/api/v1/workflows</c>: start a DAG of steps (or a chain, group or chord), read it with each step's
/// state, list, cancel and retry.</summary>
internal static class WorkflowEndpoints
{
    public static void Map(ApiGroups api)
    {
        api.Enqueue.MapPost("/workflows", CreateAsync)
            .WithName("CreateWorkflow")
            .WithSummary("Start a workflow: a DAG of steps, each a task with an id and the steps it runs after; or a chain, group, chord or batch")
            .WithDescription("201 with the workflow's id; 422 naming the step of each problem (a cycle, an unknown step in after, a duplicate id, an unknown task, too many steps); nothing is stored then.")
            .ProducesProblem(StatusCodes.Status400BadRequest)
            .ProducesValidationProblem(StatusCodes.Status422UnprocessableEntity);
        api.Read.MapGet("/workflows/{id}", GetAsync)
            .WithName("GetWorkflow")
            .WithSummary("A workflow's state and its steps, each with its state, task id, times and result")
            .ProducesProblem(StatusCodes.Status404NotFound);
        api.Read.MapGet("/workflows", ListAsync)
            .WithName("ListWorkflows")
            .WithSummary("Workflows newest first, by state and name, a page at a time")
            .ProducesProblem(StatusCodes.Status400BadRequest);
        api.Admin.MapPost("/workflows/{id}/cancel", CancelAsync)
            .WithName("CancelWorkflow")
            .WithSummary("Cancel a running workflow: steps not started never start, running ones are asked to stop")
            .ProducesProblem(StatusCodes.Status404NotFound)
            .ProducesProblem(StatusCodes.Status409Conflict)
            .Audited("workflow.cancel", "id");
        api.Admin.MapPost("/workflows/{id}/retry", RetryAsync)
            .WithName("RetryWorkflow")
            .WithSummary("Run a failed or cancelled workflow again from its failed steps; succeeded steps keep their results")
            .ProducesProblem(StatusCodes.Status404NotFound)
            .ProducesProblem(StatusCodes.Status409Conflict)
            .Audited("workflow.retry", "id");
    }

    private static async Task<Results<Ok<WorkflowResource>, ProblemHttpResult>> RetryAsync(
        string id, [FromServices] IWorkflowClient workflows, CancellationToken cancellationToken)
    {
        if (!Guid.TryParse(id, out var workflowId))
        {
            return ApiProblems.Field(StatusCodes.Status400BadRequest, "id", $"'{id}' is not a workflow id (a UUID)");
        }
        var retried = await workflows.RetryAsync(workflowId, cancellationToken).ConfigureAwait(false);
        var record = await workflows.GetAsync(workflowId, cancellationToken).ConfigureAwait(false);
        if (record is null)
        {
            return NotFound(workflowId);
        }
        return retried
            ? TypedResults.Ok(WorkflowResource.From(record))
            : ApiProblems.Status(StatusCodes.Status409Conflict, "The workflow has not failed.", $"Workflow {workflowId} is {record.State.ToApiName()}: only a failed or cancelled workflow can be retried.");
    }

    private static async Task<Results<Created<WorkflowCreatedResource>, ProblemHttpResult>> CreateAsync(
        HttpContext http, [FromServices] IWorkflowClient workflows, [FromServices] WorkflowRequestReader reader, [FromServices] DeclaredTasks declared,
        [FromServices] IOptions<ConveyorApiOptions> options, [FromServices] IOptions<ConveyorOptions> conveyor, CancellationToken cancellationToken)
    {
        var (document, problem) = await TaskEndpoints.ReadJsonBodyAsync(http, options.Value, cancellationToken).ConfigureAwait(false);
        if (problem is not null)
        {
            return problem;
        }
        WorkflowDefinition? definition;
        using (document)
        {
            var errors = new List<FieldError>();
            definition = reader.Read(document!.RootElement, errors);
            // The graph's own rules (tasks were checked as enqueues, against this process's and live workers' tasks).
            if (definition is not null)
            {
                var graph = new List<FieldError>();
                WorkflowValidator.Validate(definition, conveyor.Value.MaxWorkflowSteps, null, requireRegistered: false, graph);
                var reported = errors.Select(e => e.Field).ToHashSet(StringComparer.Ordinal);
                errors.AddRange(graph.Where(e => !reported.Contains(e.Field)));
            }
            if (errors.Count > 0 && await declared.ResolveAsync(errors, cancellationToken).ConfigureAwait(false))
            {
                return ApiProblems.Fields(StatusCodes.Status422UnprocessableEntity, NameSteps(errors, definition));
            }
        }
        try
        {
            var handle = await workflows.StartAsync(definition!, cancellationToken).ConfigureAwait(false);
            return TypedResults.Created($"{http.Request.PathBase}/api/v1/workflows/{handle.Id}", new WorkflowCreatedResource(handle.Id));
        }
        catch (TaskValidationException ex)
        {
            return ApiProblems.Fields(StatusCodes.Status422UnprocessableEntity, NameSteps([.. ex.Errors], definition));
        }
    }

    /// <summary>Each error of a step's field (<c>steps[3].args</c>) names the step by its id too.</summary>
    private static List<FieldError> NameSteps(List<FieldError> errors, WorkflowDefinition? definition)
    {
        if (definition is null)
        {
            return errors;
        }
        return [.. errors.Select(e =>
        {
            if (!e.Field.StartsWith("steps[", StringComparison.Ordinal) || e.Message.StartsWith("step '", StringComparison.Ordinal))
            {
                return e;
            }
            var end = e.Field.IndexOf(']', StringComparison.Ordinal);
            return int.TryParse(e.Field.AsSpan(6, end - 6), System.Globalization.CultureInfo.InvariantCulture, out var index) && index < definition.Steps.Count
                ? e with { Message = $"step '{definition.Steps[index].Id}': {e.Message}" }
                : e;
        })];
    }

    private static async Task<Results<Ok<WorkflowResource>, ProblemHttpResult>> GetAsync(
        string id, [FromServices] IWorkflowClient workflows, CancellationToken cancellationToken)
    {
        if (!Guid.TryParse(id, out var workflowId))
        {
            return ApiProblems.Field(StatusCodes.Status400BadRequest, "id", $"'{id}' is not a workflow id (a UUID)");
        }
        var record = await workflows.GetAsync(workflowId, cancellationToken).ConfigureAwait(false);
        return record is null ? NotFound(workflowId) : TypedResults.Ok(WorkflowResource.From(record));
    }

    private static async Task<Results<Ok<WorkflowPageResource>, ProblemHttpResult>> ListAsync(
        string? state, string? name, string? cursor, string? limit,
        [FromServices] IWorkflowClient workflows, [FromServices] IOptions<ConveyorApiOptions> options, CancellationToken cancellationToken)
    {
        var errors = new List<FieldError>();
        WorkflowState? stateFilter = null;
        if (!string.IsNullOrEmpty(state))
        {
            if (WorkflowStates.TryParseApiName(state, out var parsed))
            {
                stateFilter = parsed;
            }
            else
            {
                errors.Add(new("state", $"'{state}' is not a workflow state; one of {string.Join(", ", Enum.GetValues<WorkflowState>().Select(s => s.ToApiName()))}"));
            }
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
        try
        {
            var page = await workflows.ListAsync(new WorkflowQuery
            {
                State = stateFilter,
                Name = string.IsNullOrEmpty(name) ? null : name,
                Cursor = string.IsNullOrEmpty(cursor) ? null : cursor,
                Limit = pageSize,
            }, cancellationToken).ConfigureAwait(false);
            return TypedResults.Ok(new WorkflowPageResource([.. page.Items.Select(WorkflowResource.From)], page.NextCursor));
        }
        catch (ArgumentException) when (!string.IsNullOrEmpty(cursor))
        {
            return ApiProblems.Field(StatusCodes.Status400BadRequest, "cursor", $"'{cursor}' is not a cursor returned by this API");
        }
    }

    private static async Task<Results<Ok<WorkflowResource>, ProblemHttpResult>> CancelAsync(
        string id, [FromServices] IWorkflowClient workflows, CancellationToken cancellationToken)
    {
        if (!Guid.TryParse(id, out var workflowId))
        {
            return ApiProblems.Field(StatusCodes.Status400BadRequest, "id", $"'{id}' is not a workflow id (a UUID)");
        }
        var cancelled = await workflows.CancelAsync(workflowId, cancellationToken).ConfigureAwait(false);
        var record = await workflows.GetAsync(workflowId, cancellationToken).ConfigureAwait(false);
        if (record is null)
        {
            return NotFound(workflowId);
        }
        return cancelled
            ? TypedResults.Ok(WorkflowResource.From(record))
            : ApiProblems.Status(StatusCodes.Status409Conflict, "The workflow has finished.", $"Workflow {workflowId} is {record.State.ToApiName()}: only a running workflow can be cancelled.");
    }

    private static ProblemHttpResult NotFound(Guid id) =>
        TypedResults.Problem(statusCode: StatusCodes.Status404NotFound, title: "No such workflow.", detail: $"There is no workflow {id}.");
}
