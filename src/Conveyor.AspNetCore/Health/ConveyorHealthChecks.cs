using System.Text.Json;
using Conveyor.Backends;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Conveyor.AspNetCore.Health;

/// <summary>Ready when the backend answers <see cref="IConveyorBackend.CheckHealthAsync"/> within
/// <see cref="ConveyorApiOptions.HealthCheckTimeout"/>.</summary>
internal sealed class BackendHealthCheck(IConveyorBackend backend, IOptions<ConveyorApiOptions> options) : IHealthCheck
{
    public async Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
    {
        var data = new Dictionary<string, object> { ["backend"] = backend.Name };
        var timeout = options.Value.HealthCheckTimeout;
        BackendHealth health;
        using var timeoutSource = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        try
        {
            if (timeout <= TimeSpan.Zero)
            {
                health = await backend.CheckHealthAsync(cancellationToken).ConfigureAwait(false);
            }
            else
            {
                // The token asks the backend to stop; WaitAsync bounds the wait even if the backend does not listen to it.
                timeoutSource.CancelAfter(timeout);
                health = await backend.CheckHealthAsync(timeoutSource.Token).WaitAsync(timeout, cancellationToken).ConfigureAwait(false);
            }
        }
        catch (Exception e) when (!cancellationToken.IsCancellationRequested && e is TimeoutException or OperationCanceledException)
        {
            return HealthCheckResult.Unhealthy(
                $"The {backend.Name} backend did not answer within {timeout.TotalSeconds.ToString("0.###", System.Globalization.CultureInfo.InvariantCulture)} s.", data: data);
        }
        catch (Exception e) when (BackendOutage.Find(backend, e) is { } name)
        {
            return HealthCheckResult.Unhealthy($"The {name} backend cannot be reached: {e.Message}", data: data);
        }
        if (health.Warnings is { Count: > 0 } warnings)
        {
            data["warnings"] = warnings;
        }
        if (health.ClockSkew is { } skew)
        {
            data["clockSkewMs"] = Math.Round(skew.TotalMilliseconds, 1);
        }
        return health.Healthy
            ? HealthCheckResult.Healthy(health.Description, data)
            : HealthCheckResult.Unhealthy(health.Description, data: data);
    }
}

/// <summary>Ready when this process's worker, if it runs one, is running and reaches the backend. Its data also says
/// whether this process leads (runs the schedules and the other leader-only services).</summary>
internal sealed class WorkerHealthCheck(WorkerStatus status, ILeadership leadership, IOptions<ConveyorOptions> options) : IHealthCheck
{
    public Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
    {
        var data = new Dictionary<string, object> { ["workerId"] = status.WorkerId, ["running"] = status.Running, ["leader"] = leadership.IsLeader };
        var result = !options.Value.RunWorker ? HealthCheckResult.Healthy("No worker runs in this process.", data)
            : !status.BackendReachable ? HealthCheckResult.Unhealthy("The worker cannot reach the backend.", data: data)
            : !status.IsRunning ? HealthCheckResult.Unhealthy("The worker is not running (starting or stopped).", data: data)
            : HealthCheckResult.Healthy("The worker is running.", data);
        return Task.FromResult(result);
    }
}

/// <summary>Logs readiness on its transitions only: a warning when <c>/health/ready</c> first answers 503 (with the
/// failing checks' reasons), and one information line when it answers 200 again; the probes in between log nothing.</summary>
internal sealed partial class ReadinessLog(ILogger<ReadinessLog> logger)
{
    // 0 unknown or ready, 1 not ready (logged).
    private int _notReady;

    public void Observe(HealthReport report)
    {
        if (report.Status == HealthStatus.Unhealthy)
        {
            if (Interlocked.Exchange(ref _notReady, 1) == 0)
            {
                var reasons = report.Entries
                    .Where(e => e.Value.Status == HealthStatus.Unhealthy)
                    .Select(e => e.Key + ": " + (e.Value.Description ?? e.Value.Exception?.Message ?? "unhealthy"));
                LogNotReady(logger, string.Join("; ", reasons));
            }
        }
        else if (Volatile.Read(ref _notReady) == 1 && Interlocked.Exchange(ref _notReady, 0) == 1)
        {
            LogReadyAgain(logger);
        }
    }

    [LoggerMessage(EventId = 6003, Level = LogLevel.Warning, Message = "Not ready (/health/ready answers 503): {Reasons}")]
    private static partial void LogNotReady(ILogger logger, string reasons);

    [LoggerMessage(EventId = 6004, Level = LogLevel.Information, Message = "Ready again (/health/ready answers 200)")]
    private static partial void LogReadyAgain(ILogger logger);
}

/// <summary>Writes health reports as JSON: <c>{"status": "healthy", "checks": [{"name", "status", "description", ...}]}</c>.</summary>
internal static class HealthReportWriter
{
    public const string ReadyTag = "conveyor-ready";

    private static readonly JsonSerializerOptions JsonOptions = new(JsonSerializerDefaults.Web);

    public static Task WriteAsync(HttpContext http, HealthReport report)
    {
        var body = new
        {
            status = Name(report.Status),
            durationMs = Math.Round(report.TotalDuration.TotalMilliseconds, 1),
            checks = report.Entries.Select(e => new
            {
                name = e.Key,
                status = Name(e.Value.Status),
                description = e.Value.Description ?? e.Value.Exception?.Message,
                durationMs = Math.Round(e.Value.Duration.TotalMilliseconds, 1),
                data = e.Value.Data,
            }),
        };
        return http.Response.WriteAsJsonAsync(body, JsonOptions, http.RequestAborted);
    }

    /// <summary>Writes the readiness report, and logs when readiness changed (<see cref="ReadinessLog"/>).</summary>
    public static Task WriteReadyAsync(HttpContext http, HealthReport report)
    {
        http.RequestServices.GetService<ReadinessLog>()?.Observe(report);
        return WriteAsync(http, report);
    }

    private static string Name(HealthStatus status) => status switch
    {
        HealthStatus.Healthy => "healthy",
        HealthStatus.Degraded => "degraded",
        _ => "unhealthy",
    };
}
