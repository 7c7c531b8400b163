using System.Net;
using System.Security.Claims;
using System.Text.Json;
using Conveyor.AspNetCore.Security;
using Conveyor.Backends;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Conveyor.AspNetCore.Audit;

/// <summary>Endpoint metadata: the audit action of an admin endpoint, and the route value that names its target.</summary>
/// <param name="Action">The entry's action (<c>task.cancel</c>).</param>
/// <param name="TargetRouteValue">The route value holding the target (<c>id</c>, <c>name</c>), or null.</param>
internal sealed record AuditedAction(string Action, string? TargetRouteValue = null);

/// <summary>How endpoints and handlers take part in the audit log.</summary>
internal static class AuditTrail
{
    private const string TargetItem = "Conveyor.AuditTarget";
    private const string DetailsItem = "Conveyor.AuditDetails";

    /// <summary>Names the audit action of an endpoint of the admin group (recorded by <see cref="AuditEndpointFilter"/>).</summary>
    public static RouteHandlerBuilder Audited(this RouteHandlerBuilder builder, string action, string? targetRouteValue = null) =>
        builder.WithMetadata(new AuditedAction(action, targetRouteValue));

    /// <summary>Sets the target of this request's entry where the route does not hold it (a created key's id).</summary>
    public static void SetTarget(HttpContext http, string target) => http.Items[TargetItem] = target;

    /// <summary>Adds small, secret-free context to this request's entry (serialized as a JSON object).</summary>
    public static void SetDetails(HttpContext http, IReadOnlyDictionary<string, object?> details) => http.Items[DetailsItem] = details;

    internal static string? Target(HttpContext http, AuditedAction? audited)
    {
        if (http.Items.TryGetValue(TargetItem, out var target) && target is string text)
        {
            return text;
        }
        return audited?.TargetRouteValue is { } name && http.Request.RouteValues.TryGetValue(name, out var value) ? Convert.ToString(value, System.Globalization.CultureInfo.InvariantCulture) : null;
    }

    internal static string? Details(HttpContext http) =>
        http.Items.TryGetValue(DetailsItem, out var details) && details is IReadOnlyDictionary<string, object?> values
            ? JsonSerializer.Serialize(values)
            : null;
}

/// <summary>
/// On the admin group: records every state-changing call that passed authorization, with the status it answered (refusals
/// by the policies are recorded by <see cref="ApiAuthorizationResultHandler"/>, which runs before any filter). Safe
/// methods (the admin group's reads) are not recorded.
/// </summary>
internal sealed class AuditEndpointFilter(AuditRecorder recorder, IConveyorBackend backend) : IEndpointFilter
{
    public async ValueTask<object?> InvokeAsync(EndpointFilterInvocationContext context, EndpointFilterDelegate next)
    {
        ArgumentNullException.ThrowIfNull(context);
        ArgumentNullException.ThrowIfNull(next);
        var http = context.HttpContext;
        var audited = http.GetEndpoint()?.Metadata.GetMetadata<AuditedAction>();
        if (audited is null || ApiKeyAuthenticationHandler.IsSafe(http.Request.Method))
        {
            return await next(context).ConfigureAwait(false);
        }
        object? result;
        try
        {
            result = await next(context).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is not OperationCanceledException || !http.RequestAborted.IsCancellationRequested)
        {
            // Answered 503 by the outage filter when the backend is down, 500 otherwise.
            var status = BackendOutage.Find(backend, ex) is null ? StatusCodes.Status500InternalServerError : StatusCodes.Status503ServiceUnavailable;
            await recorder.RecordAsync(http, audited.Action, AuditTrail.Target(http, audited), status, http.User).ConfigureAwait(false);
            throw;
        }
        await recorder.RecordAsync(http, audited.Action, AuditTrail.Target(http, audited), StatusOf(result), http.User).ConfigureAwait(false);
        return result;
    }

    /// <summary>The status a handler's result will answer.</summary>
    internal static int StatusOf(object? result)
    {
        while (result is INestedHttpResult nested)
        {
            result = nested.Result;
        }
        return result is IStatusCodeHttpResult { StatusCode: { } status } ? status : StatusCodes.Status200OK;
    }
}

/// <summary>Writes audit entries for HTTP requests. A backend error is logged as a warning and never fails the request.</summary>
internal sealed partial class AuditRecorder(IConveyorBackend backend, TimeProvider time, ILogger<AuditRecorder> logger)
{
    /// <summary>Longest a write may hold a request up.</summary>
    private static readonly TimeSpan WriteTimeout = TimeSpan.FromSeconds(5);

    /// <summary>Records <paramref name="action"/> by <paramref name="who"/> (null or unauthenticated: anonymous).</summary>
    public async Task RecordAsync(HttpContext http, string action, string? target, int status, ClaimsPrincipal? who)
    {
        ArgumentNullException.ThrowIfNull(http);
        if (backend.Audit is not { } audit)
        {
            return;
        }
        var (actor, kind) = Actor(http, who);
        var now = time.GetUtcNow();
        var entry = new AuditEntry(Guid.CreateVersion7(now), now, actor, kind, action, Cut(target, AuditEntry.MaxTargetLength),
            AuditOutcomes.Of(status), status, Address(http.Connection.RemoteIpAddress),
            Cut(http.Request.Headers.UserAgent.ToString(), AuditEntry.MaxUserAgentLength), AuditTrail.Details(http));
        try
        {
            using var timeout = new CancellationTokenSource(WriteTimeout);
            await audit.AppendAuditAsync(entry, timeout.Token).ConfigureAwait(false);
        }
        catch (Exception ex)
        {
            LogNotRecorded(logger, action, ex.GetType().Name + ": " + ex.Message);
        }
    }

    /// <summary>The actor of a request: the key's id (by bearer header or dashboard session), loopback on a server without
    /// keys, or anonymous.</summary>
    internal static (string Actor, string Kind) Actor(HttpContext http, ClaimsPrincipal? who)
    {
        var keyId = who?.Identity?.IsAuthenticated == true ? who.FindFirst(ApiScopes.KeyClaim)?.Value : null;
        if (keyId is null)
        {
            return ("anonymous", AuditActorKinds.Anonymous);
        }
        if (keyId == ApiCaller.Open.KeyId)
        {
            return ("loopback", AuditActorKinds.Loopback);
        }
        var bearer = http.Request.Headers.Authorization.ToString().StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase);
        return (keyId, bearer ? AuditActorKinds.ApiKey : AuditActorKinds.Session);
    }

    private static string? Address(IPAddress? address) =>
        address is null ? null : (address.IsIPv4MappedToIPv6 ? address.MapToIPv4() : address).ToString();

    private static string? Cut(string? text, int length) =>
        string.IsNullOrEmpty(text) ? null : text.Length <= length ? text : text[..length];

    [LoggerMessage(6005, LogLevel.Warning, "The audit entry of {Action} could not be written: {Error}")]
    private static partial void LogNotRecorded(ILogger logger, string action, string error);
}

/// <summary>Records the refusals of the admin policy.</summary>
internal static class AuditRefusals
{
    public static async Task RecordAsync(HttpContext context, string scope)
    {
        if (scope != ApiScopes.Admin || context.RequestServices.GetService<AuditRecorder>() is not { } recorder)
        {
            return;
        }
        var audited = context.GetEndpoint()?.Metadata.GetMetadata<AuditedAction>();
        var action = audited?.Action ?? "api.request";
        await recorder.RecordAsync(context, action, AuditTrail.Target(context, audited), context.Response.StatusCode, context.User).ConfigureAwait(false);
    }
}
