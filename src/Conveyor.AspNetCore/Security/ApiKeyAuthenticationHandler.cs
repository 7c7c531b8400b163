using System.Text.Encodings.Web;
using Microsoft.AspNetCore.Authentication;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Conveyor.AspNetCore.Security;

/// <summary>
/// Conveyor's authentication scheme (<see cref="ApiScopes.Scheme"/>): <c>Authorization: Bearer &lt;key&gt;</c>, or the
/// dashboard's session cookie, gives a principal with the key's scopes and queues as claims. A server without keys
/// gives every request the <see cref="ApiCaller.Open"/> principal (loopback only, with Host filtering). What is refused,
/// and why, is written by <see cref="ApiAuthorizationResultHandler"/> as problem details.
/// </summary>
internal sealed class ApiKeyAuthenticationHandler(IOptionsMonitor<AuthenticationSchemeOptions> options, ILoggerFactory logger, UrlEncoder encoder,
    ApiKeyRegistry registry, DashboardSessions sessions, FailedAuthLimiter limiter)
    : AuthenticationHandler<AuthenticationSchemeOptions>(options, logger, encoder)
{
    /// <summary><see cref="HttpContext.Items"/> key of why authentication failed (a string for the 401's detail).</summary>
    internal const string FailureItem = "Conveyor.AuthFailure";

    /// <summary><see cref="HttpContext.Items"/> key of how long the address must wait (a TimeSpan: answered 429).</summary>
    internal const string BlockedItem = "Conveyor.AuthBlocked";

    /// <summary><see cref="HttpContext.Items"/> key set when the key store could not be read (answered 503).</summary>
    internal const string UnavailableItem = "Conveyor.AuthUnavailable";

    /// <summary>Claim set on a session's principal when a state-changing request lacks the session's CSRF token.</summary>
    internal const string CsrfMissingClaim = "conveyor:csrf-missing";

    private const string Bearer = "Bearer ";

    protected override async Task<AuthenticateResult> HandleAuthenticateAsync()
    {
        if (!registry.Required)
        {
            return Success(ApiCaller.Open, csrfMissing: false);
        }
        var header = Request.Headers.Authorization.ToString();
        if (header.StartsWith(Bearer, StringComparison.OrdinalIgnoreCase))
        {
            if (limiter.Blocked(Context) is { } wait)
            {
                Context.Items[BlockedItem] = wait;
                return AuthenticateResult.Fail("Too many wrong API keys from this address.");
            }
            ApiCaller? caller;
            try
            {
                caller = await registry.AuthenticateAsync(header[Bearer.Length..].Trim(), Context.RequestAborted).ConfigureAwait(false);
            }
            // A key not in memory is looked up in the backend; when that is down, the answer is 503, not 401 or 500.
            catch (Exception ex) when (ex is not OperationCanceledException)
            {
                Context.Items[UnavailableItem] = ex.Message;
                return AuthenticateResult.Fail("The stored API keys cannot be read now.");
            }
            if (caller is null)
            {
                limiter.Failed(Context);
                Context.Items[FailureItem] = "The API key is not valid.";
                return AuthenticateResult.Fail("The API key is not valid.");
            }
            return Success(caller, csrfMissing: false);
        }
        if (sessions.Read(Request) is { } session)
        {
            var csrfMissing = !IsSafe(Request.Method) && !DashboardSessions.CsrfMatches(Request, session);
            return Success(session.Caller, csrfMissing);
        }
        return AuthenticateResult.NoResult();
    }

    internal static bool IsSafe(string method) => HttpMethods.IsGet(method) || HttpMethods.IsHead(method) || HttpMethods.IsOptions(method);

    private AuthenticateResult Success(ApiCaller caller, bool csrfMissing)
    {
        var principal = caller.ToPrincipal();
        if (csrfMissing)
        {
            ((System.Security.Claims.ClaimsIdentity)principal.Identity!).AddClaim(new System.Security.Claims.Claim(CsrfMissingClaim, "true"));
        }
        return AuthenticateResult.Success(new AuthenticationTicket(principal, Scheme.Name));
    }

    protected override Task HandleChallengeAsync(AuthenticationProperties properties) =>
        ApiAuthorizationResultHandler.WriteChallengeAsync(Context);

    protected override Task HandleForbiddenAsync(AuthenticationProperties properties) =>
        ApiAuthorizationResultHandler.WriteForbiddenAsync(Context, "This API key may not do this.", scope: null);
}
