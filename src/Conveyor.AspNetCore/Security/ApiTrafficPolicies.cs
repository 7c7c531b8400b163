using System.Globalization;
using System.Threading.RateLimiting;
using Conveyor.AspNetCore.Requests;
using Microsoft.AspNetCore.Cors.Infrastructure;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.RateLimiting;

namespace Conveyor.AspNetCore.Security;

/// <summary>The API's rate limiter and CORS policy (ASP.NET Core's), both named <see cref="Name"/>.</summary>
internal static class ApiTrafficPolicies
{
    /// <summary>The name of the rate-limiting and the CORS policy on the API's endpoints.</summary>
    public const string Name = "conveyor-api";

    /// <summary>A token bucket per remote address: <see cref="ApiRateLimitOptions.Burst"/> requests at once, refilled at
    /// <see cref="ApiRateLimitOptions.PermitsPerSecond"/>; no limit when that is 0. A refused request is a 429 problem with
    /// <c>Retry-After</c>.</summary>
    public static void Configure(RateLimiterOptions limiter, ConveyorApiOptions api)
    {
        var rate = api.RateLimit;
        limiter.RejectionStatusCode = StatusCodes.Status429TooManyRequests;
        limiter.AddPolicy(Name, http => rate.PermitsPerSecond <= 0
            ? RateLimitPartition.GetNoLimiter("")
            : RateLimitPartition.GetTokenBucketLimiter(http.Connection.RemoteIpAddress?.ToString() ?? "unknown", _ => new TokenBucketRateLimiterOptions
            {
                TokenLimit = rate.Burst,
                TokensPerPeriod = rate.PermitsPerSecond,
                ReplenishmentPeriod = TimeSpan.FromSeconds(1),
                QueueLimit = 0,
                AutoReplenishment = true,
            }));
        limiter.OnRejected = (context, cancellationToken) =>
        {
            var seconds = context.Lease.TryGetMetadata(MetadataName.RetryAfter, out var after) ? Math.Max(1, (int)Math.Ceiling(after.TotalSeconds)) : 1;
            context.HttpContext.Response.Headers.RetryAfter = seconds.ToString(CultureInfo.InvariantCulture);
            return new ValueTask(ApiProblems.Status(StatusCodes.Status429TooManyRequests, "Too many requests.",
                $"This address sent more than {rate.PermitsPerSecond} requests a second (Conveyor:RateLimit); try again in {seconds} s.")
                .ExecuteAsync(context.HttpContext));
        };
    }

    /// <summary>CORS: closed (no origin allowed) unless <see cref="ApiCorsOptions.Origins"/> lists some.</summary>
    public static void Configure(CorsOptions cors, ConveyorApiOptions api) =>
        cors.AddPolicy(Name, policy =>
        {
            if (api.Cors.Origins.Count > 0)
            {
                policy.WithOrigins([.. api.Cors.Origins])
                    .WithMethods("GET", "POST", "PUT", "DELETE")
                    .WithHeaders("Authorization", "Content-Type", DashboardSessions.CsrfHeader)
                    .WithExposedHeaders("Location", "Retry-After", "Conveyor-Deduplicated");
            }
        });

    /// <summary>What is wrong with the configured origins, or null.</summary>
    public static string? OriginsProblem(ConveyorApiOptions api)
    {
        for (var i = 0; i < api.Cors.Origins.Count; i++)
        {
            var origin = api.Cors.Origins[i];
            if (!Uri.TryCreate(origin, UriKind.Absolute, out var uri) || uri.Scheme is not ("http" or "https")
                || uri.GetLeftPart(UriPartial.Authority) != origin.TrimEnd('/') || origin.EndsWith('/'))
            {
                return $"Conveyor:Cors:Origins item {i + 1} '{origin}' is not an origin: use scheme://host[:port] (https://app.example.com), without path or trailing slash.";
            }
        }
        return null;
    }
}

/// <summary>The API's rate limit (<c>Conveyor:RateLimit</c>).</summary>
public sealed class ApiRateLimitOptions
{
    /// <summary>Requests a second each remote address may send to <c>/api</c>; 0 for no limit. Default 20,000: well
    /// above what one client needs (the HTTP enqueue benchmark sends about 9,000), so it only cuts floods.</summary>
    public int PermitsPerSecond { get; set; } = 20_000;

    /// <summary>Requests an address may send at once before the rate applies. Default 20,000.</summary>
    public int Burst { get; set; } = 20_000;
}

/// <summary>Cross-origin access to the API (<c>Conveyor:Cors</c>).</summary>
public sealed class ApiCorsOptions
{
    /// <summary>Origins whose pages may call the API from a browser (<c>https://app.example.com</c>). Default none: CORS is
    /// closed, and state-changing requests from other origins are refused (403).</summary>
    public IList<string> Origins { get; } = [];
}
