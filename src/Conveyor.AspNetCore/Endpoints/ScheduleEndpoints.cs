using System.Text.Json;
using Conveyor.AspNetCore.Audit;
using Conveyor.AspNetCore.Contracts;
using Conveyor.AspNetCore.Requests;
using Conveyor.Scheduling;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.AspNetCore.Mvc;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.Options;

namespace Conveyor.AspNetCore.Endpoints;

/// <summary><c>/api/v1/schedules</c>: list, get, create, update, pause, resume, trigger and delete periodic schedules.</summary>
internal static class ScheduleEndpoints
{
    public static void Map(ApiGroups api)
    {
        api.Read.MapGet("/schedules", ListAsync)
            .WithName("ListSchedules")
            .WithSummary("Every periodic schedule with its state, last fire and next fire times");
        api.Read.MapGet("/schedules/{name}", GetAsync)
            .WithName("GetSchedule")
            .WithSummary("One schedule")
            .ProducesProblem(StatusCodes.Status404NotFound);
        api.Admin.MapPost("/schedules", CreateAsync)
            .WithName("CreateSchedule")
            .WithSummary("Create a schedule: a cron expression (with a time zone) or a fixed interval, and the task each tick enqueues")
            .WithDescription("201 with the schedule and its next fire times; 422 naming each bad field (an unparsable cron, an unknown time zone, an interval under one second, a name in use, a task no process declares).")
            .Accepts<ScheduleResource>("application/json")
            .ProducesProblem(StatusCodes.Status400BadRequest)
            .ProducesValidationProblem(StatusCodes.Status422UnprocessableEntity)
            .Audited("schedule.create");
        api.Admin.MapPut("/schedules/{name}", UpdateAsync)
            .WithName("UpdateSchedule")
            .WithSummary("Replace a schedule's definition, keeping its state; a new timing counts ticks from now")
            .Accepts<ScheduleResource>("application/json")
            .ProducesProblem(StatusCodes.Status400BadRequest)
            .ProducesProblem(StatusCodes.Status404NotFound)
            .ProducesValidationProblem(StatusCodes.Status422UnprocessableEntity)
            .Audited("schedule.update", "name");
        api.Admin.MapPost("/schedules/{name}/pause", (string name, IScheduleClient schedules, TimeProvider time, CancellationToken cancellationToken) =>
                AnswerAsync(name, schedules.PauseAsync(name, cancellationToken), time))
            .WithName("PauseSchedule")
            .WithSummary("Hold a schedule's ticks back")
            .ProducesProblem(StatusCodes.Status404NotFound)
            .Audited("schedule.pause", "name");
        api.Admin.MapPost("/schedules/{name}/resume", (string name, IScheduleClient schedules, TimeProvider time, CancellationToken cancellationToken) =>
                AnswerAsync(name, schedules.ResumeAsync(name, cancellationToken), time))
            .WithName("ResumeSchedule")
            .WithSummary("Let a paused schedule fire again from now (ticks that fell while paused are not fired)")
            .ProducesProblem(StatusCodes.Status404NotFound)
            .Audited("schedule.resume", "name");
        api.Admin.MapPost("/schedules/{name}/trigger", TriggerAsync)
            .WithName("TriggerSchedule")
            .WithSummary("Enqueue the schedule's task now, outside its ticks")
            .WithDescription("202 with the task's id and a Location to follow it.")
            .ProducesProblem(StatusCodes.Status404NotFound)
            .Audited("schedule.trigger", "name");
        api.Admin.MapDelete("/schedules/{name}", DeleteAsync)
            .WithName("DeleteSchedule")
            .WithSummary("Delete a schedule (the tasks it enqueued stay)")
            .ProducesProblem(StatusCodes.Status404NotFound)
            .Audited("schedule.delete", "name");
    }

    private static async Task<Ok<List<ScheduleResource>>> ListAsync([FromServices] IScheduleClient schedules, [FromServices] TimeProvider time, CancellationToken cancellationToken)
    {
        var all = await schedules.ListAsync(cancellationToken).ConfigureAwait(false);
        var now = time.GetUtcNow();
        return TypedResults.Ok(all.Select(s => ScheduleResource.From(s, now)).ToList());
    }

    private static Task<Results<Ok<ScheduleResource>, ProblemHttpResult>> GetAsync(
        string name, [FromServices] IScheduleClient schedules, [FromServices] TimeProvider time, CancellationToken cancellationToken) =>
        AnswerAsync(name, schedules.GetAsync(name, cancellationToken), time);

    private static async Task<Results<Created<ScheduleResource>, ProblemHttpResult>> CreateAsync(
        HttpContext http, [FromServices] IScheduleClient schedules, [FromServices] ScheduleRequestReader reader, [FromServices] DeclaredTasks declared,
        [FromServices] IOptions<ConveyorApiOptions> options, [FromServices] TimeProvider time, CancellationToken cancellationToken)
    {
        var (definition, problem) = await ReadAsync(http, reader, declared, options.Value, routeName: null, cancellationToken).ConfigureAwait(false);
        if (problem is not null)
        {
            return problem;
        }
        AuditTrail.SetTarget(http, definition!.Name);
        try
        {
            var schedule = await schedules.CreateAsync(definition!, cancellationToken).ConfigureAwait(false);
            return TypedResults.Created($"{http.Request.PathBase}/api/v1/schedules/{Uri.EscapeDataString(schedule.Definition.Name)}",
                ScheduleResource.From(schedule, time.GetUtcNow()));
        }
        catch (ScheduleValidationException ex)
        {
            return ApiProblems.Fields(StatusCodes.Status422UnprocessableEntity, ex.Errors);
        }
    }

    private static async Task<Results<Ok<ScheduleResource>, ProblemHttpResult>> UpdateAsync(
        string name, HttpContext http, [FromServices] IScheduleClient schedules, [FromServices] ScheduleRequestReader reader, [FromServices] DeclaredTasks declared,
        [FromServices] IOptions<ConveyorApiOptions> options, [FromServices] TimeProvider time, CancellationToken cancellationToken)
    {
        var (definition, problem) = await ReadAsync(http, reader, declared, options.Value, name, cancellationToken).ConfigureAwait(false);
        if (problem is not null)
        {
            return problem;
        }
        try
        {
            return await AnswerAsync(name, schedules.UpdateAsync(definition!, cancellationToken), time).ConfigureAwait(false);
        }
        catch (ScheduleValidationException ex)
        {
            return ApiProblems.Fields(StatusCodes.Status422UnprocessableEntity, ex.Errors);
        }
    }

    private static async Task<Results<Accepted<TriggerResource>, ProblemHttpResult>> TriggerAsync(
        string name, HttpContext http, [FromServices] IScheduleClient schedules, CancellationToken cancellationToken)
    {
        EnqueueResult? result;
        try
        {
            result = await schedules.TriggerAsync(name, cancellationToken).ConfigureAwait(false);
        }
        catch (TaskValidationException ex)
        {
            return ApiProblems.Fields(StatusCodes.Status422UnprocessableEntity, ex.Errors);
        }
        if (result is not { } enqueued)
        {
            return NotFound(name);
        }
        return TypedResults.Accepted($"{http.Request.PathBase}/api/v1/tasks/{enqueued.Id}", new TriggerResource(enqueued.Id));
    }

    private static async Task<Results<NoContent, ProblemHttpResult>> DeleteAsync(
        string name, [FromServices] IScheduleClient schedules, CancellationToken cancellationToken) =>
        await schedules.DeleteAsync(name, cancellationToken).ConfigureAwait(false) ? TypedResults.NoContent() : NotFound(name);

    private static async Task<Results<Ok<ScheduleResource>, ProblemHttpResult>> AnswerAsync(string name, Task<Schedule?> call, TimeProvider time) =>
        await call.ConfigureAwait(false) is { } schedule ? TypedResults.Ok(ScheduleResource.From(schedule, time.GetUtcNow())) : NotFound(name);

    private static async Task<(ScheduleDefinition? Definition, ProblemHttpResult? Problem)> ReadAsync(
        HttpContext http, ScheduleRequestReader reader, DeclaredTasks declared, ConveyorApiOptions options, string? routeName, CancellationToken cancellationToken)
    {
        var (document, problem) = await TaskEndpoints.ReadJsonBodyAsync(http, options, cancellationToken).ConfigureAwait(false);
        if (problem is not null)
        {
            return (null, problem);
        }
        using (document)
        {
            var errors = new List<FieldError>();
            var definition = reader.Read(document!.RootElement, routeName, errors);
            if (errors.Count > 0 && await declared.ResolveAsync(errors, cancellationToken).ConfigureAwait(false))
            {
                return (null, ApiProblems.Fields(StatusCodes.Status422UnprocessableEntity, errors));
            }
            return (definition, null);
        }
    }

    private static ProblemHttpResult NotFound(string name) =>
        TypedResults.Problem(statusCode: StatusCodes.Status404NotFound, title: "No such schedule.", detail: $"There is no schedule named '{name}'.");
}

/// <summary>The answer to a trigger: the task enqueued.</summary>
/// <param name="TaskId">Its id.</param>
public sealed record TriggerResource(Guid TaskId);
