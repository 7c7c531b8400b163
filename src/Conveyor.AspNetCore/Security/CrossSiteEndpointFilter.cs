using Conveyor.AspNetCore.Requests;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;

namespace Conveyor.AspNetCore.Security;

/// <summary>
/// A state-changing request (not GET, HEAD or OPTIONS) that a browser marks as coming from another site or origin
/// (<c>Sec-Fetch-Site: cross-site</c>, or an <c>Origin</c> whose host is not this request's) is answered 403, with or
/// without keys: an open API on loopback cannot be driven by a web page the user happens to visit.
/// </summary>
internal sealed class CrossSiteEndpointFilter : IEndpointFilter
{
    public ValueTask<object?> InvokeAsync(EndpointFilterInvocationContext context, EndpointFilterDelegate next)
    {
        ArgumentNullException.ThrowIfNull(context);
        ArgumentNullException.ThrowIfNull(next);
        var origins = context.HttpContext.RequestServices.GetRequiredService<IOptions<ConveyorApiOptions>>().Value.Cors.Origins;
        return CrossSiteProblem(context.HttpContext.Request, origins) is { } problem ? ValueTask.FromResult<object?>(problem) : next(context);
    }

    /// <summary>A 403 problem for a state-changing request that a browser sent from another site or origin; null otherwise.
    /// Clients that are not browsers send neither header and pass. The Origin's host is compared with the request's
    /// <c>Host</c> (without scheme and port, which a TLS-terminating proxy changes): a proxy must pass the Host on.</summary>
    internal static object? CrossSiteProblem(HttpRequest request, IList<string>? allowedOrigins = null)
    {
        if (ApiKeyAuthenticationHandler.IsSafe(request.Method))
        {
            return null;
        }
        if (allowedOrigins is { Count: > 0 } && allowedOrigins.Contains(request.Headers.Origin.ToString(), StringComparer.OrdinalIgnoreCase))
        {
            // An origin the operator opened with Conveyor:Cors:Origins.
            return null;
        }
        var fetchSite = request.Headers["Sec-Fetch-Site"].ToString();
        var origin = request.Headers.Origin.ToString();
        var crossSite = string.Equals(fetchSite, "cross-site", StringComparison.OrdinalIgnoreCase);
        if (!crossSite && origin.Length > 0)
        {
            crossSite = !Uri.TryCreate(origin, UriKind.Absolute, out var originUri)
                || !string.Equals(originUri.Host, request.Host.Host, StringComparison.OrdinalIgnoreCase);
        }
        return crossSite
            ? ApiProblems.Status(StatusCodes.Status403Forbidden, "Cross-site request refused.",
                $"A state-changing request from another site (Origin '{origin}', Sec-Fetch-Site '{fetchSite}') is refused; call the API from its own origin, or without a browser.")
            : null;
    }
}
