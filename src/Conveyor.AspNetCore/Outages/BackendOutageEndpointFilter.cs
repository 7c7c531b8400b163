using System.Globalization;
using Conveyor.AspNetCore.Requests;
using Conveyor.Backends;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Conveyor.AspNetCore.Outages;

/// <summary>
/// Answers an <c>/api</c> request whose backend call failed because the backend's server cannot be reached
/// (<see cref="BackendOutage.Find"/>) with 503 Service Unavailable, a problem-details body naming the backend and a
/// <c>Retry-After</c> header, instead of letting ASP.NET Core log an unhandled exception per request and answer 500.
/// The outage is logged once (<see cref="BackendOutageLog"/>). Any other exception passes through unchanged.
/// </summary>
internal sealed class BackendOutageEndpointFilter(IConveyorBackend backend, BackendOutageLog log, IOptions<ConveyorApiOptions> options) : IEndpointFilter
{
    public async ValueTask<object?> InvokeAsync(EndpointFilterInvocationContext context, EndpointFilterDelegate next)
    {
        ArgumentNullException.ThrowIfNull(context);
        ArgumentNullException.ThrowIfNull(next);
        string? unavailable = null;
        try
        {
            var result = await next(context).ConfigureAwait(false);
            log.Succeeded();
            return result;
        }
        catch (Exception e) when (!context.HttpContext.Response.HasStarted && (unavailable = BackendOutage.Find(backend, e)) is not null)
        {
            log.Failed(unavailable, e);
        }
        var retryAfter = options.Value.RetryAfter;
        context.HttpContext.Response.Headers.RetryAfter = Math.Max(1, (long)Math.Ceiling(retryAfter.TotalSeconds)).ToString(CultureInfo.InvariantCulture);
        return ApiProblems.Status(StatusCodes.Status503ServiceUnavailable, "The backend is unavailable.",
            $"The {unavailable} backend cannot be reached; try again later.",
            new Dictionary<string, object?> { ["backend"] = unavailable });
    }
}

/// <summary>Logs a backend outage seen by API requests once: a warning at the first failing request, and one
/// information line at the first request that succeeds after it; the requests in between log nothing.</summary>
internal sealed partial class BackendOutageLog(ILogger<BackendOutageLog> logger)
{
    private int _down;

    public void Failed(string backend, Exception exception)
    {
        if (Interlocked.Exchange(ref _down, 1) == 0)
        {
            LogUnavailable(logger, backend, exception.GetType().Name + ": " + exception.Message);
        }
    }

    public void Succeeded()
    {
        if (Volatile.Read(ref _down) == 1 && Interlocked.Exchange(ref _down, 0) == 1)
        {
            LogAvailable(logger);
        }
    }

    [LoggerMessage(EventId = 6001, Level = LogLevel.Warning,
        Message = "The {Backend} backend is unavailable ({Reason}); API requests that need it answer 503 until it is back")]
    private static partial void LogUnavailable(ILogger logger, string backend, string reason);

    [LoggerMessage(EventId = 6002, Level = LogLevel.Information, Message = "API requests reach the backend again")]
    private static partial void LogAvailable(ILogger logger);
}
