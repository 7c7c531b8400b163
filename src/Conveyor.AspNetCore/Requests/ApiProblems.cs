using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.AspNetCore.WebUtilities;

namespace Conveyor.AspNetCore.Requests;

/// <summary>The RFC 9457 problem details the API answers with, written by the framework as <c>application/problem+json</c>.</summary>
internal static class ApiProblems
{
    /// <summary>Fields that are wrong: the <c>errors</c> member maps each field (<c>tasks[3].queue</c>) to its problems.</summary>
    public static ProblemHttpResult Fields(int status, IReadOnlyList<FieldError> errors, string? detail = null)
    {
        // At most MaxFields problems: a body of 20,000 unknown fields would otherwise get an answer twenty times its
        // size (an amplifier), and one field's problem is enough to fix the request.
        var shown = errors.Count > MaxFields ? errors.Take(MaxFields).ToList() : errors;
        var byField = shown
            .GroupBy(e => e.Field, StringComparer.Ordinal)
            .ToDictionary(g => g.Key, g => g.Select(e => e.Message).ToArray(), StringComparer.Ordinal);
        var more = errors.Count > MaxFields ? $"; and {errors.Count - MaxFields} more problems" : "";
        return TypedResults.Problem(new HttpValidationProblemDetails(byField)
        {
            Status = status,
            Title = status == StatusCodes.Status422UnprocessableEntity ? "The request is not valid." : "The request is malformed.",
            Detail = detail ?? string.Join("; ", shown.Select(e => $"{e.Field}: {e.Message}")) + more,
        });
    }

    /// <summary>How many field problems an answer lists at most (the first ones found).</summary>
    public const int MaxFields = 50;

    /// <summary>Writes the problem details of a status that has no body yet (404 for no route, 405 for a method a route
    /// does not take): <c>application/problem+json</c> whatever the request's Accept says, as every other error is.</summary>
    public static Task WriteStatusAsync(HttpContext http)
    {
        ArgumentNullException.ThrowIfNull(http);
        var status = http.Response.StatusCode;
        var title = status switch
        {
            StatusCodes.Status404NotFound => "Not found.",
            StatusCodes.Status405MethodNotAllowed => "Method not allowed.",
            _ => ReasonPhrases.GetReasonPhrase(status),
        };
        var detail = status switch
        {
            StatusCodes.Status404NotFound => "There is nothing at this path; the API is under /api/v1 (its OpenAPI document: /openapi/v1.json).",
            StatusCodes.Status405MethodNotAllowed => $"This path takes {http.Response.Headers.Allow}, not the method of this request.",
            _ => null,
        };
        return TypedResults.Problem(statusCode: status, title: title, detail: detail).ExecuteAsync(http);
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
