using System.Globalization;
using System.Text.Json;
using Conveyor.AspNetCore.Audit;
using Conveyor.AspNetCore.Requests;
using Conveyor.AspNetCore.Security;
using Conveyor.Backends;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.AspNetCore.Mvc;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.Options;

namespace Conveyor.AspNetCore.Endpoints;

/// <summary><c>/api/v1/session/login</c> and <c>/api/v1/session/mfa/*</c>: dashboard users sign in with a password and a
/// TOTP or recovery code, and enrol a TOTP authenticator. Mapped beside <see cref="SessionEndpoints"/>, outside the
/// authorization policies; the cross-site check, the failed-attempt limit and (for enrolment) the session's CSRF token
/// apply.</summary>
internal static class UserSessionEndpoints
{
    /// <summary>The one answer to every failed sign-in: it does not tell whether the user exists, is locked, or which
    /// factor was wrong.</summary>
    public const string FailedDetail = "The user name, password or code is not valid, or the user is locked out for a while.";

    public static void Map(RouteGroupBuilder group)
    {
        group.MapPost("/session/login", SignInAsync)
            .WithName("SignInUser")
            .WithSummary("Sign in a dashboard user ({\"user\", \"password\", \"code\"}): sets the session cookie, or answers codeRequired")
            .ProducesProblem(StatusCodes.Status401Unauthorized)
            .ProducesProblem(StatusCodes.Status429TooManyRequests);
        group.MapPost("/session/mfa/enrol", BeginEnrolmentAsync)
            .WithName("BeginMfaEnrolment")
            .WithSummary("Start TOTP enrolment for the signed-in user: the secret, its otpauth:// URI and a QR code (SVG)")
            .ProducesProblem(StatusCodes.Status401Unauthorized)
            .ProducesProblem(StatusCodes.Status409Conflict);
        group.MapPost("/session/mfa/confirm", ConfirmEnrolmentAsync)
            .WithName("ConfirmMfaEnrolment")
            .WithSummary("Confirm TOTP enrolment with a code ({\"code\"}): the 10 recovery codes, shown this once")
            .ProducesProblem(StatusCodes.Status401Unauthorized)
            .ProducesProblem(StatusCodes.Status422UnprocessableEntity)
            .ProducesProblem(StatusCodes.Status429TooManyRequests);
        group.MapPost("/session/mfa/recovery-codes", RenewRecoveryCodesAsync)
            .WithName("RenewRecoveryCodes")
            .WithSummary("Replace the signed-in user's recovery codes, on a current TOTP code ({\"code\"}): the 10 new codes, shown this once")
            .ProducesProblem(StatusCodes.Status401Unauthorized)
            .ProducesProblem(StatusCodes.Status422UnprocessableEntity)
            .ProducesProblem(StatusCodes.Status429TooManyRequests);
        group.MapGet("/session/me", Me)
            .WithName("GetSessionUser")
            .WithSummary("The signed-in user's name, role, second factor and session scopes")
            .ProducesProblem(StatusCodes.Status401Unauthorized);
    }

    private static async Task<Results<Ok<UserSessionResource>, ProblemHttpResult>> SignInAsync(HttpContext http,
        [FromServices] DashboardUsers users, [FromServices] ApiKeyRegistry keys, [FromServices] DashboardSessions sessions,
        [FromServices] FailedAuthLimiter limiter, [FromServices] IOptions<ConveyorApiOptions> options, [FromServices] AuditRecorder audit,
        CancellationToken cancellationToken)
    {
        if (CrossSiteEndpointFilter.CrossSiteProblem(http.Request) is ProblemHttpResult crossSite)
        {
            return crossSite;
        }
        var (document, problem) = await TaskEndpoints.ReadJsonBodyAsync(http, options.Value, cancellationToken).ConfigureAwait(false);
        if (problem is not null)
        {
            return problem;
        }
        using (document)
        {
            var root = document!.RootElement;
            var name = Text(root, "user");
            var password = Text(root, "password");
            var code = Text(root, "code");
            if (name is not { Length: > 0 } || password is not { Length: > 0 })
            {
                await audit.RecordAsync(http, "session.sign-in-failed", null, StatusCodes.Status422UnprocessableEntity, null).ConfigureAwait(false);
                return ApiProblems.Fields(StatusCodes.Status422UnprocessableEntity,
                    [.. new[] { ("user", name), ("password", password) }.Where(f => f.Item2 is not { Length: > 0 }).Select(f => new FieldError(f.Item1, "is required, as a string"))]);
            }
            // The target is the name as typed, cut short: an audit entry may name a user that does not exist.
            var target = name.Length > UserNames.MaxLength ? name[..UserNames.MaxLength] : name;
            if (limiter.Blocked(http) is { } wait)
            {
                var seconds = Math.Max(1, (int)Math.Ceiling(wait.TotalSeconds));
                http.Response.Headers.RetryAfter = seconds.ToString(CultureInfo.InvariantCulture);
                await audit.RecordAsync(http, "session.sign-in-failed", target, StatusCodes.Status429TooManyRequests, null).ConfigureAwait(false);
                return ApiProblems.Status(StatusCodes.Status429TooManyRequests, "Too many failed attempts.",
                    $"Too many failed sign-ins came from this address; try again in {seconds} s.");
            }
            var (result, user, usedRecovery) = await users.SignInAsync(name, password, code, cancellationToken).ConfigureAwait(false);
            switch (result)
            {
                case UserSignInResult.CodeRequired:
                    return TypedResults.Ok(new UserSessionResource(false, true, false, []));
                case UserSignInResult.Failed or UserSignInResult.LockedOut:
                    limiter.Failed(http);
                    var action = result == UserSignInResult.LockedOut ? "user.locked-out" : "session.sign-in-failed";
                    await audit.RecordAsync(http, action, target, StatusCodes.Status401Unauthorized, null).ConfigureAwait(false);
                    return ApiProblems.Status(StatusCodes.Status401Unauthorized, "Unauthorized.", FailedDetail);
            }
            var signedIn = user!;
            keys.RememberUser(signedIn);
            // An admin without a second factor, off loopback, may do nothing but enrol one.
            var kind = DashboardUsers.KindFor(signedIn, DashboardSessions.IsLoopback(http));
            var enrolOnly = kind == SessionKind.EnrolOnly;
            var caller = DashboardUsers.ToCaller(signedIn, kind);
            var (session, csrf, expires) = sessions.Issue(caller);
            DashboardSessions.Write(http, session, csrf, expires);
            if (usedRecovery)
            {
                await audit.RecordAsync(http, "user.recovery-code-used", signedIn.Name, StatusCodes.Status200OK, caller.ToPrincipal()).ConfigureAwait(false);
            }
            await audit.RecordAsync(http, "session.sign-in", signedIn.Name, StatusCodes.Status200OK, caller.ToPrincipal()).ConfigureAwait(false);
            return TypedResults.Ok(new UserSessionResource(true, false, enrolOnly, [.. caller.Scopes]));
        }
    }

    private static async Task<Results<Ok<MfaEnrolmentResource>, ProblemHttpResult>> BeginEnrolmentAsync(HttpContext http,
        [FromServices] DashboardUsers users, [FromServices] DashboardSessions sessions, [FromServices] AuditRecorder audit,
        CancellationToken cancellationToken)
    {
        if (UserOf(http, sessions) is not { } caller)
        {
            return ApiProblems.Status(StatusCodes.Status401Unauthorized, "Unauthorized.", "Sign in as a user, and send the session's CSRF token in X-Conveyor-CSRF.");
        }
        if (await users.BeginEnrolmentAsync(caller.Name, cancellationToken).ConfigureAwait(false) is not { } enrolment)
        {
            return ApiProblems.Status(StatusCodes.Status409Conflict, "Already enrolled.",
                "This user has a second factor already; an operator can reset it with `conveyor users reset-mfa`.");
        }
        await audit.RecordAsync(http, "user.mfa-enrol-started", caller.Name, StatusCodes.Status200OK, caller.ToPrincipal()).ConfigureAwait(false);
        return TypedResults.Ok(new MfaEnrolmentResource(enrolment.Secret, enrolment.Uri, enrolment.QrSvg));
    }

    private static async Task<Results<Ok<MfaConfirmedResource>, ProblemHttpResult>> ConfirmEnrolmentAsync(HttpContext http,
        [FromServices] DashboardUsers users, [FromServices] ApiKeyRegistry keys, [FromServices] DashboardSessions sessions,
        [FromServices] FailedAuthLimiter limiter, [FromServices] IOptions<ConveyorApiOptions> options, [FromServices] AuditRecorder audit,
        CancellationToken cancellationToken)
    {
        var (caller, code, problem) = await ReadCodeAsync(http, sessions, limiter, options.Value, cancellationToken).ConfigureAwait(false);
        if (problem is not null)
        {
            return problem;
        }
        if (code is null || await users.ConfirmEnrolmentAsync(caller!.Name, code, cancellationToken).ConfigureAwait(false) is not { } confirmed)
        {
            return await WrongCodeAsync(http, limiter, audit, "user.mfa-enrol", caller!, "is not the current code of the authenticator being enrolled").ConfigureAwait(false);
        }
        keys.RememberUser(confirmed.User);
        // The old session was signed with the pre-enrolment secret: a new one, with the user's full scopes.
        var full = DashboardUsers.ToCaller(confirmed.User, SessionKind.Full);
        var (session, csrf, expires) = sessions.Issue(full);
        DashboardSessions.Write(http, session, csrf, expires);
        await audit.RecordAsync(http, "user.mfa-enrol", caller.Name, StatusCodes.Status200OK, full.ToPrincipal()).ConfigureAwait(false);
        return TypedResults.Ok(new MfaConfirmedResource(confirmed.RecoveryCodes, [.. full.Scopes]));
    }

    private static async Task<Results<Ok<RecoveryCodesResource>, ProblemHttpResult>> RenewRecoveryCodesAsync(HttpContext http,
        [FromServices] DashboardUsers users, [FromServices] ApiKeyRegistry keys, [FromServices] DashboardSessions sessions,
        [FromServices] FailedAuthLimiter limiter, [FromServices] IOptions<ConveyorApiOptions> options, [FromServices] AuditRecorder audit,
        CancellationToken cancellationToken)
    {
        var (caller, code, problem) = await ReadCodeAsync(http, sessions, limiter, options.Value, cancellationToken).ConfigureAwait(false);
        if (problem is not null)
        {
            return problem;
        }
        if (code is null || await users.RenewRecoveryCodesAsync(caller!.Name, code, cancellationToken).ConfigureAwait(false) is not { } renewed)
        {
            return await WrongCodeAsync(http, limiter, audit, "user.recovery-codes-renewed", caller!,
                "is not the current code of the user's authenticator (a recovery code is not accepted here)").ConfigureAwait(false);
        }
        keys.RememberUser(renewed.User);
        await audit.RecordAsync(http, "user.recovery-codes-renewed", caller.Name, StatusCodes.Status200OK, caller.ToPrincipal()).ConfigureAwait(false);
        return TypedResults.Ok(new RecoveryCodesResource(renewed.RecoveryCodes));
    }

    /// <summary>What a call that proves a TOTP code shares: the signed-in user (with the CSRF token), the failed-attempt
    /// limit, and the body's <c>code</c> (null when missing, which is answered as a wrong code). A problem to answer
    /// instead, or the caller and the code.</summary>
    private static async Task<(ApiCaller? Caller, string? Code, ProblemHttpResult? Problem)> ReadCodeAsync(HttpContext http,
        DashboardSessions sessions, FailedAuthLimiter limiter, ConveyorApiOptions options, CancellationToken cancellationToken)
    {
        if (UserOf(http, sessions) is not { } caller)
        {
            return (null, null, ApiProblems.Status(StatusCodes.Status401Unauthorized, "Unauthorized.",
                "Sign in as a user, and send the session's CSRF token in X-Conveyor-CSRF."));
        }
        if (TooManyFailures(http, limiter) is { } blocked)
        {
            return (null, null, blocked);
        }
        var (document, problem) = await TaskEndpoints.ReadJsonBodyAsync(http, options, cancellationToken).ConfigureAwait(false);
        if (problem is not null)
        {
            return (null, null, problem);
        }
        using (document)
        {
            return (caller, Text(document!.RootElement, "code") is { Length: > 0 } code ? code : null, null);
        }
    }

    /// <summary>A wrong code: counted toward the address's failed-attempt limit, audited, answered 422 naming <c>code</c>.</summary>
    private static async Task<ProblemHttpResult> WrongCodeAsync(HttpContext http, FailedAuthLimiter limiter, AuditRecorder audit, string action,
        ApiCaller caller, string message)
    {
        limiter.Failed(http);
        await audit.RecordAsync(http, action, caller.Name, StatusCodes.Status422UnprocessableEntity, caller.ToPrincipal()).ConfigureAwait(false);
        return ApiProblems.Field(StatusCodes.Status422UnprocessableEntity, "code", message);
    }

    private static Results<Ok<SessionUserResource>, ProblemHttpResult> Me(HttpContext http, [FromServices] ApiKeyRegistry keys, [FromServices] DashboardSessions sessions)
    {
        // A read: no CSRF token needed, and none is checked.
        if (CrossSiteEndpointFilter.CrossSiteProblem(http.Request) is not null
            || sessions.Read(http.Request) is not { } session
            || DashboardUsers.ParseSessionId(session.Caller.KeyId) is not var (name, kind)
            || keys.FindUser(name) is not { } user)
        {
            return ApiProblems.Status(StatusCodes.Status401Unauthorized, "Unauthorized.", "No user is signed in with this session.");
        }
        return TypedResults.Ok(new SessionUserResource(user.Name, user.Role, user.MfaEnabled, user.RecoveryCodes.Count,
            kind == SessionKind.EnrolOnly, [.. session.Caller.Scopes]));
    }

    /// <summary>429 with <c>Retry-After</c> when the address is over the failed-attempt limit: a wrong code here counts as a
    /// failed sign-in does, so that a stolen session cannot guess codes at the API's rate.</summary>
    private static ProblemHttpResult? TooManyFailures(HttpContext http, FailedAuthLimiter limiter)
    {
        if (limiter.Blocked(http) is not { } wait)
        {
            return null;
        }
        var seconds = Math.Max(1, (int)Math.Ceiling(wait.TotalSeconds));
        http.Response.Headers.RetryAfter = seconds.ToString(CultureInfo.InvariantCulture);
        return ApiProblems.Status(StatusCodes.Status429TooManyRequests, "Too many failed attempts.",
            $"Too many wrong codes or sign-ins came from this address; try again in {seconds} s.");
    }

    /// <summary>The user of the request's session cookie, when its CSRF header matches; else null.</summary>
    private static ApiCaller? UserOf(HttpContext http, DashboardSessions sessions)
    {
        if (CrossSiteEndpointFilter.CrossSiteProblem(http.Request) is not null
            || sessions.Read(http.Request) is not { } session
            || !DashboardSessions.CsrfMatches(http.Request, session)
            || DashboardUsers.ParseSessionId(session.Caller.KeyId) is null)
        {
            return null;
        }
        return session.Caller;
    }

    private static string? Text(JsonElement root, string name) =>
        root.ValueKind == JsonValueKind.Object && root.TryGetProperty(name, out var value) && value.ValueKind == JsonValueKind.String ? value.GetString() : null;
}

/// <summary>The answer of <c>POST /api/v1/session/login</c>.</summary>
/// <param name="Authenticated">Whether the session cookie was set.</param>
/// <param name="CodeRequired">The password was right: send it again with a TOTP or recovery code in <c>code</c>.</param>
/// <param name="EnrolmentRequired">An admin off loopback without a second factor: the session may only enrol one.</param>
/// <param name="Scopes">What the session may do.</param>
public sealed record UserSessionResource(bool Authenticated, bool CodeRequired, bool EnrolmentRequired, IReadOnlyList<string> Scopes);

/// <summary>A TOTP enrolment begun: the secret (base32) to type in, its <c>otpauth://</c> URI, and that URI as an SVG
/// QR code.</summary>
public sealed record MfaEnrolmentResource(string Secret, string Uri, string QrSvg);

/// <summary>A TOTP enrolment confirmed: the recovery codes, shown this once, and the new session's scopes.</summary>
public sealed record MfaConfirmedResource(IReadOnlyList<string> RecoveryCodes, IReadOnlyList<string> Scopes);

/// <summary>New recovery codes, shown this once.</summary>
public sealed record RecoveryCodesResource(IReadOnlyList<string> RecoveryCodes);

/// <summary>The signed-in user (<c>GET /api/v1/session/me</c>).</summary>
/// <param name="User">The user's name.</param>
/// <param name="Role">The user's role.</param>
/// <param name="MfaEnabled">Whether a TOTP second factor is enrolled.</param>
/// <param name="RecoveryCodesLeft">Unused recovery codes.</param>
/// <param name="EnrolmentRequired">The session may only enrol a second factor.</param>
/// <param name="Scopes">What the session may do.</param>
public sealed record SessionUserResource(string User, string Role, bool MfaEnabled, int RecoveryCodesLeft, bool EnrolmentRequired, IReadOnlyList<string> Scopes);
