using Conveyor.AspNetCore;
using Conveyor.AspNetCore.Security;
using OpenTelemetry.Metrics;
using OpenTelemetry.Resources;
using OpenTelemetry.Trace;

namespace Conveyor.Server.Hosting;

/// <summary>
/// The OpenTelemetry SDK over Conveyor's meter and activity source (<see cref="ConveyorDiagnostics"/>): a Prometheus
/// scrape endpoint on the server (<c>GET /metrics</c>, behind the API's keys: scope read), and an OTLP exporter of metrics and traces
/// in every process when <c>OTEL_EXPORTER_OTLP_ENDPOINT</c> is set (the exporter reads the other standard
/// <c>OTEL_*</c> variables itself: protocol, headers, service name, resource attributes).
/// </summary>
internal static class ConveyorTelemetry
{
    /// <summary>The scrape endpoint's path.</summary>
    public const string MetricsPath = "/metrics";

    private const string OtlpEndpointVariable = "OTEL_EXPORTER_OTLP_ENDPOINT";

    /// <summary>Registers the SDK for <paramref name="role"/>: Prometheus when it serves HTTP and metrics are on, OTLP when
    /// its endpoint is configured; nothing otherwise, so a process that exports nothing pays for no listener.</summary>
    public static void Add(IServiceCollection services, IConfiguration configuration, HostRole role, bool metrics)
    {
        var prometheus = role == HostRole.Server && metrics;
        var otlp = !string.IsNullOrWhiteSpace(configuration[OtlpEndpointVariable]);
        if (!prometheus && !otlp)
        {
            return;
        }
        var telemetry = services.AddOpenTelemetry();
        if (string.IsNullOrWhiteSpace(configuration["OTEL_SERVICE_NAME"]))
        {
            // OTEL_SERVICE_NAME, when set, names the service instead (the SDK reads it).
            telemetry.ConfigureResource(resource => resource.AddService("conveyor", serviceVersion: ConveyorDiagnostics.ActivitySource.Version));
        }
        telemetry.WithMetrics(builder =>
        {
            builder.AddMeter(ConveyorDiagnostics.Name);
            if (prometheus)
            {
                builder.AddPrometheusExporter();
            }
            if (otlp)
            {
                builder.AddOtlpExporter();
            }
        });
        if (otlp)
        {
            telemetry.WithTracing(builder => builder
                .AddSource(ConveyorDiagnostics.Name)
                // Scrapes and probes are not requests anyone wants traced.
                .AddAspNetCoreInstrumentation(o => o.Filter = http =>
                    !http.Request.Path.StartsWithSegments(MetricsPath, StringComparison.Ordinal) &&
                    !http.Request.Path.StartsWithSegments("/health", StringComparison.Ordinal))
                .AddOtlpExporter());
        }
    }

    /// <summary>Maps <c>GET /metrics</c> (Prometheus text) behind the API's key rule, when <see cref="Add"/> registered it.</summary>
    public static void Map(WebApplication app, bool metrics)
    {
        if (metrics)
        {
            app.MapPrometheusScrapingEndpoint(MetricsPath, meterProvider: null, configureBranchedPipeline: null, optionsName: null)
                .RequireConveyorScope(ApiScopes.Read);
        }
    }
}
