using System.Net;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace Conveyor.Dashboard;

/// <summary>Maps Conveyor's dashboard into an ASP.NET Core app.</summary>
public static class ConveyorDashboardExtensions
{
    // The app's client routes: each answers the page, which routes itself. Anything else under the prefix is a 404.
    private static readonly string[] ClientRoutes = ["", "tasks", "tasks/{id}", "queues", "workers", "schedules", "workflows", "workflows/{id}", "limits"];

    /// <summary>
    /// Serves the dashboard at <paramref name="prefix"/> (<c>"/"</c>, or <c>"/conveyor"</c> beside an app's own pages):
    /// the page for each of its routes, and its scripts and styles under <c>{prefix}/assets/</c>. It reads the API that
    /// <c>MapConveyorApi</c> maps at <c>/api/v1</c> of the same app (after its path base), so call that too, with
    /// <c>AddConveyorApi</c>. Where API keys are configured, the page asks for one and exchanges it for a session cookie;
    /// the page itself holds no data and is served to anyone who can reach it.
    /// </summary>
    /// <returns>The group of the dashboard's endpoints, to which conventions (authorization, host filters) can be added.</returns>
    public static RouteGroupBuilder MapConveyorDashboard(this IEndpointRouteBuilder endpoints, string prefix = "/")
    {
        ArgumentNullException.ThrowIfNull(endpoints);
        ArgumentNullException.ThrowIfNull(prefix);
        if (!prefix.StartsWith('/'))
        {
            throw new ArgumentException($"The dashboard's prefix must start with '/', as \"/conveyor\" does; '{prefix}' does not.", nameof(prefix));
        }
        var assets = DashboardAssets.Load();
        var trimmed = prefix.TrimEnd('/');
        var group = endpoints.MapGroup(trimmed.Length == 0 ? "/" : trimmed).ExcludeFromDescription();
        foreach (var route in ClientRoutes)
        {
            group.MapGet(route.Length == 0 ? "/" : "/" + route, (HttpContext http) => Page(http, assets, trimmed));
        }
        group.MapGet("/assets/{file}", (HttpContext http, string file) => Asset(http, assets, file));
        return group;
    }

    private static IResult Page(HttpContext http, DashboardAssets assets, string prefix)
    {
        var pathBase = http.Request.PathBase.Value ?? "";
        var path = http.Request.Path.Value ?? "";
        if (path == prefix)
        {
            // "/conveyor" without its slash: the page's relative URLs need the slash, so send the browser there.
            return Results.Redirect($"{pathBase}{prefix}/{http.Request.QueryString}");
        }
        var html = assets.IndexTemplate
            .Replace("%BASE%", WebUtility.HtmlEncode($"{pathBase}{prefix}/"), StringComparison.Ordinal)
            .Replace("%API%", WebUtility.HtmlEncode($"{pathBase}/api/v1"), StringComparison.Ordinal);
        var headers = http.Response.Headers;
        headers.CacheControl = "no-cache";
        headers.XContentTypeOptions = "nosniff";
        headers["Referrer-Policy"] = "same-origin";
        headers.XFrameOptions = "DENY";
        // Everything the page loads comes from this origin; no inline script runs (the icon is a data: URL).
        headers.ContentSecurityPolicy = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'self'; form-action 'self'";
        return Results.Content(html, "text/html; charset=utf-8");
    }

    private static IResult Asset(HttpContext http, DashboardAssets assets, string file)
    {
        if (!assets.Files.TryGetValue(file, out var asset))
        {
            return Results.NotFound();
        }
        var headers = http.Response.Headers;
        headers.ETag = asset.ETag;
        headers.XContentTypeOptions = "nosniff";
        // The page asks for assets with their content hash in the query (?v=…): a versioned URL never changes.
        headers.CacheControl = http.Request.Query.ContainsKey("v") ? "public, max-age=31536000, immutable" : "no-cache";
        if (http.Request.Headers.IfNoneMatch is var match && match.Count > 0 && match.Contains(asset.ETag))
        {
            return Results.StatusCode(StatusCodes.Status304NotModified);
        }
        return Results.Bytes(asset.Content, asset.ContentType);
    }
}
