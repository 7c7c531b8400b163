using System.Globalization;
using Conveyor.AspNetCore.Audit;
using Conveyor.AspNetCore.Contracts;
using Conveyor.AspNetCore.Requests;
using Conveyor.Backends;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.AspNetCore.Routing;

namespace Conveyor.AspNetCore.Endpoints;

/// <summary><c>GET /api/v1/audit</c> (scope admin): the audit log, newest first, with filters and cursor paging.</summary>
internal static class AuditEndpoints
{
    /// <summary>Most entries in one page.</summary>
    public const int MaxLimit = 500;

    private const int DefaultLimit = 100;
    private const int MaxFilterLength = 200;

    public static void Map(ApiGroups api) =>
        api.Admin.MapGet("/audit", ListAsync)
            .WithName("ListAudit")
            .WithSummary("The audit log, newest first: ?action= (prefix) &actor= &since= &until= (ISO 8601) &cursor= &limit= (1-500, default 100)")
            .WithDescription("Sign-ins and admin actions: who, what, to what, when, from where, and how it ended. 400 naming the field for a bad filter.")
            .ProducesProblem(StatusCodes.Status400BadRequest)
            .Audited("audit.list");

    private static async Task<Results<Ok<AuditPageResource>, ProblemHttpResult>> ListAsync(HttpContext http, IConveyorBackend backend, CancellationToken cancellationToken)
    {
        if (backend.Audit is not { } audit)
        {
            return ApiProblems.Status(StatusCodes.Status501NotImplemented, "No audit log.", $"The {backend.Name} backend keeps no audit log.");
        }
        var (query, problem) = Read(http.Request.Query);
        if (problem is not null)
        {
            return problem;
        }
        var page = await audit.ListAuditAsync(query!, cancellationToken).ConfigureAwait(false);
        return TypedResults.Ok(new AuditPageResource(page.Entries.Select(AuditEntryResource.From).ToList(), page.Next?.ToString()));
    }

    /// <summary>The query of the request's filters, or a 400 naming the first bad one.</summary>
    internal static (AuditQuery? Query, ProblemHttpResult? Problem) Read(IQueryCollection values)
    {
        var errors = new List<FieldError>();
        string? Text(string field)
        {
            var value = values[field].ToString();
            if (values[field].Count > 1)
            {
                errors.Add(new FieldError(field, "must be given once"));
            }
            else if (value.Length > MaxFilterLength)
            {
                errors.Add(new FieldError(field, $"must be at most {MaxFilterLength} characters"));
            }
            return value.Length == 0 ? null : value;
        }
        DateTimeOffset? Time(string field)
        {
            if (Text(field) is not { } text)
            {
                return null;
            }
            if (DateTimeOffset.TryParse(text, CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal | DateTimeStyles.AdjustToUniversal, out var at))
            {
                return at;
            }
            errors.Add(new FieldError(field, "must be an ISO 8601 date and time, such as 2026-01-31T12:00:00Z"));
            return null;
        }
        var action = Text("action");
        var actor = Text("actor");
        var since = Time("since");
        var until = Time("until");
        AuditCursor? cursor = null;
        if (Text("cursor") is { } cursorText && !AuditCursor.TryParse(cursorText, out cursor))
        {
            errors.Add(new FieldError("cursor", "is not a cursor: pass the nextCursor of the previous page"));
        }
        var limit = DefaultLimit;
        if (Text("limit") is { } limitText && (!int.TryParse(limitText, NumberStyles.None, CultureInfo.InvariantCulture, out limit) || limit < 1 || limit > MaxLimit))
        {
            errors.Add(new FieldError("limit", $"must be a whole number from 1 to {MaxLimit}"));
        }
        if (since is { } from && until is { } to && from > to)
        {
            errors.Add(new FieldError("until", "must not be before since"));
        }
        return errors.Count > 0
            ? (null, ApiProblems.Fields(StatusCodes.Status400BadRequest, errors))
            : (new AuditQuery(action, actor, since, until, cursor, limit), null);
    }
}
