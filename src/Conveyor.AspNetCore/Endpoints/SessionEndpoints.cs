using System.Globalization;
using System.Text.Json;
using Conveyor.AspNetCore.Audit;
using Conveyor.AspNetCore.Requests;
using Conveyor.AspNetCore.Security;
using Microsoft.AspNetCore.Authentication;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.AspNetCore.Mvc;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.Options;

namespace Conveyor.AspNetCore.Endpoints;

/// <summary><c>/api/v1/session</c>: the dashboard exchanges an API key for a session cookie. Mapped outside the
/// authorization policies (it is where a key is first presented); the cross-site check and the failed-attempt limit still apply.</summary>
internal static class SessionEndpoints
{
    public static void Map(RouteGroupBuilder group)
    {
        group.MapGet("/session", Get)
            .WithName("GetSession")
            .WithSummary("Whether this server needs an API key, and whether this request carries a valid key or session");
        group.MapPost("/session", SignInAsync)
            .WithName("SignIn")
            .WithSummary("Exchange an API key ({\"key\"}) for the dashboard's session cookie and CSRF token")
            .WithDescription("Sets conveyor_session (Secure, HttpOnly, SameSite=Strict) and conveyor_csrf (to be sent back in X-Conveyor-CSRF on state-changing calls). 401 for a wrong key.")
            .ProducesProblem(StatusCodes.Status401Unauthorized)
            .ProducesProblem(StatusCodes.Status403Forbidden);
        group.MapDelete("/session", SignOutAsync)
            .WithName("SignOut")
            .WithSummary("End the dashboard's session: removes its cookies");
    }

    private static async Task<Ok<SessionResource>> Get(HttpContext http, [FromServices] ApiKeyRegistry keys)
    {
        var result = await http.AuthenticateAsync(ApiScopes.Scheme).ConfigureAwait(false);
        IReadOnlyList<string> scopes = result.Succeeded ? result.Principal!.FindAll(ApiScopes.ScopeClaim).Select(c => c.Value).ToList() : [];
        return TypedResults.Ok(new SessionResource(keys.Required, result.Succeeded, scopes));
    }

    private static async Task<Results<Ok<SessionResource>, ProblemHttpResult>> SignInAsync(HttpContext http,
        [FromServices] ApiKeyRegistry keys, [FromServices] DashboardSessions sessions, [FromServices] FailedAuthLimiter limiter,
        [FromServices] IOptions<ConveyorApiOptions> options, [FromServices] AuditRecorder audit, CancellationToken cancellationToken)
    {
        if (CrossSiteEndpointFilter.CrossSiteProblem(http.Request) is ProblemHttpResult crossSite)
        {
            return crossSite;
        }
        if (!keys.Required)
        {
            return TypedResults.Ok(new SessionResource(false, true, [.. ApiCaller.Open.Scopes]));
        }
        var (document, problem) = await TaskEndpoints.ReadJsonBodyAsync(http, options.Value, cancellationToken).ConfigureAwait(false);
        if (problem is not null)
        {
            return problem;
        }
        using (document)
        {
            var root = document!.RootElement;
            // Failed sign-ins are recorded with the status only: never the key presented.
            if (!root.TryGetProperty("key", out var keyElement) || keyElement.ValueKind != JsonValueKind.String || keyElement.GetString() is not { Length: > 0 } key)
            {
                await audit.RecordAsync(http, "session.sign-in-failed", null, StatusCodes.Status422UnprocessableEntity, null).ConfigureAwait(false);
                return ApiProblems.Field(StatusCodes.Status422UnprocessableEntity, "key", "is required: one of the server's API keys, as a string");
            }
            if (limiter.Blocked(http) is { } wait)
            {
                var seconds = Math.Max(1, (int)Math.Ceiling(wait.TotalSeconds));
                http.Response.Headers.RetryAfter = seconds.ToString(CultureInfo.InvariantCulture);
                await audit.RecordAsync(http, "session.sign-in-failed", null, StatusCodes.Status429TooManyRequests, null).ConfigureAwait(false);
                return ApiProblems.Status(StatusCodes.Status429TooManyRequests, "Too many failed attempts.",
                    $"Too many wrong API keys came from this address; try again in {seconds} s.");
            }
            if (await keys.AuthenticateAsync(key.Trim(), cancellationToken).ConfigureAwait(false) is not { } caller)
            {
                limiter.Failed(http);
                await audit.RecordAsync(http, "session.sign-in-failed", null, StatusCodes.Status401Unauthorized, null).ConfigureAwait(false);
                return ApiProblems.Status(StatusCodes.Status401Unauthorized, "Unauthorized.", "The API key is not valid.");
            }
            var (session, csrf, expires) = sessions.Issue(caller);
            DashboardSessions.Write(http, session, csrf, expires);
            await audit.RecordAsync(http, "session.sign-in", null, StatusCodes.Status200OK, caller.ToPrincipal()).ConfigureAwait(false);
            return TypedResults.Ok(new SessionResource(true, true, [.. caller.Scopes]));
        }
    }

    private static async Task<Results<Ok<SessionResource>, ProblemHttpResult>> SignOutAsync(HttpContext http, [FromServices] ApiKeyRegistry keys,
        [FromServices] DashboardSessions sessions, [FromServices] AuditRecorder audit)
    {
        if (CrossSiteEndpointFilter.CrossSiteProblem(http.Request) is ProblemHttpResult crossSite)
        {
            return crossSite;
        }
        // Whose session ends: a sign-out without a valid session is recorded as anonymous.
        var caller = keys.Required ? sessions.Read(http.Request)?.Caller : ApiCaller.Open;
        DashboardSessions.Clear(http);
        await audit.RecordAsync(http, "session.sign-out", null, StatusCodes.Status200OK, caller?.ToPrincipal()).ConfigureAwait(false);
        return TypedResults.Ok(new SessionResource(keys.Required, !keys.Required, keys.Required ? [] : [.. ApiCaller.Open.Scopes]));
    }
}

/// <summary>The answer of <c>/api/v1/session</c>.</summary>
/// <param name="KeysRequired">Whether the API needs a key (keys are configured).</param>
/// <param name="Authenticated">Whether this request may call the API: no key needed, or a valid key or session sent.</param>
/// <param name="Scopes">What it may do (<c>read</c>, <c>enqueue</c>, <c>admin</c>); empty when not authenticated.</param>
public sealed record SessionResource(bool KeysRequired, bool Authenticated, IReadOnlyList<string> Scopes);
