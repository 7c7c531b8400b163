using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.HttpResults;

namespace Conveyor.AspNetCore.Requests;

/// <summary>The RFC 9457 problem details the API answers with, written by the framework as <c>application/problem+json</c>.</summary>
internal static class ApiProblems
{
    /// <summary>Fields that are wrong: the <c>errors</c> member maps each field (<c>tasks[3].queue</c>) to its problems.</summary>
    public static ProblemHttpResult Fields(int status, IReadOnlyList<FieldError> errors, string? detail = null)
    {
        var byField = errors
            .GroupBy(e => e.Field, StringComparer.Ordinal)
            .ToDictionary(g => g.Key, g => g.Select(e => e.Message).ToArray(), StringComparer.Ordinal);
        return TypedResults.Problem(new HttpValidationProblemDetails(byField)
        {
            Status = status,
            Title = status == StatusCodes.Status422UnprocessableEntity ? "The request is not valid." : "The request is malformed.",
            Detail = detail ?? string.Join("; ", errors.Select(e => $"{e.Field}: {e.Message}")),
        });
    }

    /// <summary>One field that is wrong.</summary>
    public static ProblemHttpResult Field(int status, string field, string message) => Fields(status, [new FieldError(field, message)]);

    /// <summary>No task with this id.</summary>
    public static ProblemHttpResult TaskNotFound(Guid id) =>
        TypedResults.Problem(statusCode: StatusCodes.Status404NotFound, title: "No such task.", detail: $"There is no task {id}.");

    /// <summary>A problem with no field to name.</summary>
    public static ProblemHttpResult Status(int status, string title, string detail, IDictionary<string, object?>? extensions = null) =>
        TypedResults.Problem(statusCode: status, title: title, detail: detail, extensions: extensions);
}
