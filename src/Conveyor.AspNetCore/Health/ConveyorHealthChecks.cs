using System.Text.Json;
using Conveyor.Backends;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Options;

namespace Conveyor.AspNetCore.Health;

/// <summary>Ready when the backend answers <see cref="IConveyorBackend.CheckHealthAsync"/>.</summary>
internal sealed class BackendHealthCheck(IConveyorBackend backend) : IHealthCheck
{
    public async Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
    {
        var health = await backend.CheckHealthAsync(cancellationToken).ConfigureAwait(false);
        var data = new Dictionary<string, object> { ["backend"] = backend.Name };
        if (health.Warnings is { Count: > 0 } warnings)
        {
            data["warnings"] = warnings;
        }
        return health.Healthy
            ? HealthCheckResult.Healthy(health.Description, data)
            : HealthCheckResult.Unhealthy(health.Description, data: data);
    }
}

/// <summary>Ready when this process's worker, if it runs one, is running and reaches the backend.</summary>
internal sealed class WorkerHealthCheck(WorkerStatus status, IOptions<ConveyorOptions> options) : IHealthCheck
{
    public Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
    {
        var data = new Dictionary<string, object> { ["workerId"] = status.WorkerId, ["running"] = status.Running };
        var result = !options.Value.RunWorker ? HealthCheckResult.Healthy("No worker runs in this process.")
            : !status.BackendReachable ? HealthCheckResult.Unhealthy("The worker cannot reach the backend.", data: data)
            : !status.IsRunning ? HealthCheckResult.Unhealthy("The worker is not running (starting or stopped).", data: data)
            : HealthCheckResult.Healthy("The worker is running.", data);
        return Task.FromResult(result);
    }
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

    private static string Name(HealthStatus status) => status switch
    {
        HealthStatus.Healthy => "healthy",
        HealthStatus.Degraded => "degraded",
        _ => "unhealthy",
    };
}
