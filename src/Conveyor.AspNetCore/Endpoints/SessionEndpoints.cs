using System.Text.Json;
using Conveyor.AspNetCore.Requests;
using Conveyor.AspNetCore.Security;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.AspNetCore.Mvc;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.Options;

namespace Conveyor.AspNetCore.Endpoints;

/// <summary><c>/api/v1/session</c>: the dashboard exchanges an API key for a session cookie. Mapped outside the key
/// check (it is where a key is first presented); the cross-site check still applies.</summary>
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
        group.MapDelete("/session", SignOut)
            .WithName("SignOut")
            .WithSummary("End the dashboard's session: removes its cookies");
    }

    private static Ok<SessionResource> Get(HttpContext http, [FromServices] ApiKeyValidator keys, [FromServices] DashboardSessions sessions)
    {
        var authenticated = !keys.Required || sessions.Read(http.Request) is not null
            || (http.Request.Headers.Authorization.ToString() is var h && h.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase) && keys.IsValid(h.AsSpan(7).Trim()));
        return TypedResults.Ok(new SessionResource(keys.Required, authenticated));
    }

    private static async Task<Results<Ok<SessionResource>, ProblemHttpResult>> SignInAsync(HttpContext http,
        [FromServices] ApiKeyValidator keys, [FromServices] DashboardSessions sessions, [FromServices] IOptions<ConveyorApiOptions> options,
        CancellationToken cancellationToken)
    {
        if (ApiKeyEndpointFilter.CrossSiteProblem(http.Request) is ProblemHttpResult crossSite)
        {
            return crossSite;
        }
        if (!keys.Required)
        {
            return TypedResults.Ok(new SessionResource(false, true));
        }
        var (document, problem) = await TaskEndpoints.ReadJsonBodyAsync(http, options.Value, cancellationToken).ConfigureAwait(false);
        if (problem is not null)
        {
            return problem;
        }
        using (document)
        {
            var root = document!.RootElement;
            if (!root.TryGetProperty("key", out var keyElement) || keyElement.ValueKind != JsonValueKind.String || keyElement.GetString() is not { Length: > 0 } key)
            {
                return ApiProblems.Field(StatusCodes.Status422UnprocessableEntity, "key", "is required: one of the server's API keys, as a string");
            }
            if (keys.Match(key.AsSpan().Trim()) is not { } keyHash)
            {
                return ApiProblems.Status(StatusCodes.Status401Unauthorized, "Unauthorized.", "The API key is not valid.");
            }
            var (session, csrf, expires) = sessions.Issue(keyHash);
            DashboardSessions.Write(http, session, csrf, expires);
            return TypedResults.Ok(new SessionResource(true, true));
        }
    }

    private static Results<Ok<SessionResource>, ProblemHttpResult> SignOut(HttpContext http, [FromServices] ApiKeyValidator keys)
    {
        if (ApiKeyEndpointFilter.CrossSiteProblem(http.Request) is ProblemHttpResult crossSite)
        {
            return crossSite;
        }
        DashboardSessions.Clear(http);
        return TypedResults.Ok(new SessionResource(keys.Required, !keys.Required));
    }
}

/// <summary>The answer of <c>/api/v1/session</c>.</summary>
/// <param name="KeysRequired">Whether the API needs a key (keys are configured).</param>
/// <param name="Authenticated">Whether this request may call the API: no key needed, or a valid key or session sent.</param>
public sealed record SessionResource(bool KeysRequired, bool Authenticated);
