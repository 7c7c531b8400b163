using System.Globalization;
using Conveyor.AspNetCore.Requests;
using Microsoft.AspNetCore.Authorization;
using Microsoft.AspNetCore.Authorization.Policy;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;
using Microsoft.Net.Http.Headers;

namespace Conveyor.AspNetCore.Security;

/// <summary>The caller needs <see cref="Scope"/> (or admin), and a dashboard session's state-changing call needs its CSRF token.</summary>
/// <param name="Scope">One of <see cref="ApiScopes.All"/>.</param>
internal sealed record ScopeRequirement(string Scope) : IAuthorizationRequirement;

/// <summary>Decides <see cref="ScopeRequirement"/> from the caller's claims, with a reason that names the scope.</summary>
internal sealed class ScopeAuthorizationHandler : AuthorizationHandler<ScopeRequirement>
{
    protected override Task HandleRequirementAsync(AuthorizationHandlerContext context, ScopeRequirement requirement)
    {
        var user = context.User;
        if (user.HasClaim(c => c.Type == ApiKeyAuthenticationHandler.CsrfMissingClaim))
        {
            context.Fail(new AuthorizationFailureReason(this,
                $"A state-changing request made with the dashboard's session cookie needs its CSRF token in the header {DashboardSessions.CsrfHeader}."));
        }
        else if (user.HasClaim(ApiScopes.ScopeClaim, requirement.Scope) || user.HasClaim(ApiScopes.ScopeClaim, ApiScopes.Admin))
        {
            context.Succeed(requirement);
        }
        else if (user.Identity?.IsAuthenticated == true)
        {
            var has = string.Join(", ", user.FindAll(ApiScopes.ScopeClaim).Select(c => c.Value));
            context.Fail(new AuthorizationFailureReason(this,
                $"This needs an API key with the '{requirement.Scope}' scope{(requirement.Scope == ApiScopes.Admin ? "" : " (or 'admin')")}; this key has: {(has.Length == 0 ? "none" : has)}."));
        }
        return Task.CompletedTask;
    }
}

/// <summary>
/// Writes the refusals of Conveyor's policies as problem details: 401 with <c>WWW-Authenticate: Bearer</c>, 403 naming the
/// scope needed (in <c>detail</c> and a <c>scope</c> member), 429 with <c>Retry-After</c> for an address that presented too
/// many wrong keys. Other policies of the app are left to the framework's handler.
/// </summary>
internal sealed class ApiAuthorizationResultHandler : IAuthorizationMiddlewareResultHandler
{
    private readonly AuthorizationMiddlewareResultHandler _default = new();

    public Task HandleAsync(RequestDelegate next, HttpContext context, AuthorizationPolicy policy, PolicyAuthorizationResult authorizeResult)
    {
        ArgumentNullException.ThrowIfNull(context);
        ArgumentNullException.ThrowIfNull(policy);
        ArgumentNullException.ThrowIfNull(authorizeResult);
        var scope = policy.Requirements.OfType<ScopeRequirement>().FirstOrDefault();
        if (scope is null || authorizeResult.Succeeded)
        {
            return _default.HandleAsync(next, context, policy, authorizeResult);
        }
        return RefuseAsync(context, scope.Scope, authorizeResult);
    }

    private static async Task RefuseAsync(HttpContext context, string scope, PolicyAuthorizationResult authorizeResult)
    {
        if (authorizeResult.Challenged)
        {
            await WriteChallengeAsync(context).ConfigureAwait(false);
        }
        else
        {
            var reasons = authorizeResult.AuthorizationFailure?.FailureReasons.Select(r => r.Message).ToList() ?? [];
            await WriteForbiddenAsync(context, reasons.Count > 0 ? string.Join(" ", reasons) : $"This needs an API key with the '{scope}' scope.", scope).ConfigureAwait(false);
        }
        // After the answer is written, so that the entry has its status; refusals of admin calls only.
        await Audit.AuditRefusals.RecordAsync(context, scope).ConfigureAwait(false);
    }

    /// <summary>401 (or 429 for a blocked address) as problem details.</summary>
    public static Task WriteChallengeAsync(HttpContext context)
    {
        if (context.Items.TryGetValue(ApiKeyAuthenticationHandler.BlockedItem, out var blocked) && blocked is TimeSpan wait)
        {
            var seconds = Math.Max(1, (int)Math.Ceiling(wait.TotalSeconds));
            context.Response.Headers.RetryAfter = seconds.ToString(CultureInfo.InvariantCulture);
            return ApiProblems.Status(StatusCodes.Status429TooManyRequests, "Too many failed attempts.",
                $"Too many wrong API keys came from this address; try again in {seconds} s.").ExecuteAsync(context);
        }
        if (context.Items.ContainsKey(ApiKeyAuthenticationHandler.UnavailableItem))
        {
            var retry = context.RequestServices.GetRequiredService<IOptions<ConveyorApiOptions>>().Value.RetryAfter;
            context.Response.Headers.RetryAfter = Math.Max(1, (int)Math.Ceiling(retry.TotalSeconds)).ToString(CultureInfo.InvariantCulture);
            return ApiProblems.Status(StatusCodes.Status503ServiceUnavailable, "The backend cannot be reached.",
                "The API key could not be checked: the backend that stores keys cannot be read now. Try again.").ExecuteAsync(context);
        }
        context.Response.Headers[HeaderNames.WWWAuthenticate] = "Bearer realm=\"conveyor\"";
        var detail = context.Items.TryGetValue(ApiKeyAuthenticationHandler.FailureItem, out var failure) && failure is string text
            ? text
            : "This API needs an API key: send the header 'Authorization: Bearer <key>', or sign in to the dashboard.";
        return ApiProblems.Status(StatusCodes.Status401Unauthorized, "Unauthorized.", detail).ExecuteAsync(context);
    }

    /// <summary>403 as problem details, naming <paramref name="scope"/> when one is missing.</summary>
    public static Task WriteForbiddenAsync(HttpContext context, string detail, string? scope) =>
        ApiProblems.Status(StatusCodes.Status403Forbidden, "Forbidden.", detail,
            scope is null || detail.Contains(DashboardSessions.CsrfHeader, StringComparison.Ordinal) ? null : new Dictionary<string, object?> { ["scope"] = scope })
            .ExecuteAsync(context);
}
