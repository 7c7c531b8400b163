using System.Threading.RateLimiting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Options;

namespace Conveyor.AspNetCore.Security;

/// <summary>
/// Slows down guessing: each address may present <see cref="ConveyorApiOptions.FailedAuthLimit"/> wrong keys per
/// <see cref="ConveyorApiOptions.FailedAuthWindow"/>; past that, every key it presents is answered 429 with
/// <c>Retry-After</c> until the window ends, right or wrong, without being checked. ASP.NET Core's rate limiter
/// (System.Threading.RateLimiting), one fixed window per remote address, counting failures only. Behind a proxy, the
/// address is the proxy's unless forwarded headers are configured.
/// </summary>
internal sealed class FailedAuthLimiter : IDisposable
{
    private readonly PartitionedRateLimiter<string> _limiter;

    public FailedAuthLimiter(IOptions<ConveyorApiOptions> options)
    {
        ArgumentNullException.ThrowIfNull(options);
        var limit = options.Value.FailedAuthLimit;
        var window = options.Value.FailedAuthWindow;
        _limiter = PartitionedRateLimiter.Create<string, string>(address => RateLimitPartition.GetFixedWindowLimiter(address,
            _ => new FixedWindowRateLimiterOptions { PermitLimit = limit, Window = window, QueueLimit = 0, AutoReplenishment = true }));
    }

    /// <summary>How long the request's address must wait before presenting a key again; null when it may now.</summary>
    public TimeSpan? Blocked(HttpContext http)
    {
        // Zero permits: asks whether any is left without taking one.
        using var lease = _limiter.AttemptAcquire(Address(http), 0);
        return lease.IsAcquired ? null : RetryAfter(lease);
    }

    /// <summary>Counts a wrong key from the request's address.</summary>
    public void Failed(HttpContext http)
    {
        using var lease = _limiter.AttemptAcquire(Address(http), 1);
    }

    public void Dispose() => _limiter.Dispose();

    private static TimeSpan RetryAfter(RateLimitLease lease) =>
        lease.TryGetMetadata(MetadataName.RetryAfter, out var after) && after > TimeSpan.Zero ? after : TimeSpan.FromSeconds(1);

    private static string Address(HttpContext http) => http.Connection.RemoteIpAddress?.ToString() ?? "unknown";
}
