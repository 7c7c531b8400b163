using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;

namespace Conveyor.AspNetCore.Security;

/// <summary>Headers that tell browsers to treat every response strictly.</summary>
public static class SecurityHeadersApplicationBuilderExtensions
{
    /// <summary>
    /// Adds to every response, unless the endpoint set its own: <c>X-Content-Type-Options: nosniff</c> (no guessing a
    /// JSON body is a script), <c>Referrer-Policy: no-referrer</c>, <c>X-Frame-Options: DENY</c> and
    /// <c>Content-Security-Policy: default-src 'none'; frame-ancestors 'none'</c> (an API answer runs nothing and is framed
    /// nowhere). The dashboard's page sets its own policy, which lets it load its scripts and styles from its origin.
    /// </summary>
    public static IApplicationBuilder UseConveyorSecurityHeaders(this IApplicationBuilder app)
    {
        ArgumentNullException.ThrowIfNull(app);
        return app.Use((http, next) =>
        {
            http.Response.OnStarting(static state =>
            {
                var headers = ((HttpContext)state).Response.Headers;
                if (headers.XContentTypeOptions.Count == 0)
                {
                    headers.XContentTypeOptions = "nosniff";
                }
                if (!headers.ContainsKey("Referrer-Policy"))
                {
                    headers["Referrer-Policy"] = "no-referrer";
                }
                if (headers.XFrameOptions.Count == 0)
                {
                    headers.XFrameOptions = "DENY";
                }
                if (headers.ContentSecurityPolicy.Count == 0)
                {
                    headers.ContentSecurityPolicy = "default-src 'none'; frame-ancestors 'none'";
                }
                return Task.CompletedTask;
            }, http);
            return next(http);
        });
    }
}
