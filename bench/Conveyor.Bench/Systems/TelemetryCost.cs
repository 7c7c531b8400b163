using System.Diagnostics;
using Microsoft.Extensions.DependencyInjection;
using OpenTelemetry;
using OpenTelemetry.Metrics;
using OpenTelemetry.Trace;

namespace Conveyor.Bench.Systems;

/// <summary>The OpenTelemetry SDK over Conveyor's meter and activity source with exporters that discard what they are
/// given: metrics aggregated and collected every 5 s, every span sampled and batched, as the server's Prometheus and
/// OTLP exporters would, without the network.</summary>
internal static class TelemetryCost
{
    /// <summary>Adds the SDK for <paramref name="what"/>: <c>1</c> or <c>all</c> both, <c>metrics</c> (what a server with
    /// <c>/metrics</c> runs by default) or <c>traces</c> (what <c>OTEL_EXPORTER_OTLP_ENDPOINT</c> adds) alone; anything
    /// else nothing. Returns whether it added anything.</summary>
    public static bool Add(IServiceCollection services, string? what)
    {
        var metrics = what is "1" or "all" or "metrics";
        var traces = what is "1" or "all" or "traces";
        if (!metrics && !traces)
        {
            return false;
        }
        var telemetry = services.AddOpenTelemetry();
        if (metrics)
        {
            telemetry.WithMetrics(builder => builder
                .AddMeter(ConveyorDiagnostics.Name)
                .AddReader(new PeriodicExportingMetricReader(new DiscardMetrics(), exportIntervalMilliseconds: 5000)));
        }
        if (traces)
        {
            telemetry.WithTracing(builder => builder
                .AddSource(ConveyorDiagnostics.Name)
                .SetSampler(new AlwaysOnSampler())
                .AddProcessor(new BatchActivityExportProcessor(new DiscardSpans())));
        }
        return true;
    }

    private sealed class DiscardMetrics : BaseExporter<Metric>
    {
        public override ExportResult Export(in Batch<Metric> batch) => ExportResult.Success;
    }

    private sealed class DiscardSpans : BaseExporter<Activity>
    {
        public override ExportResult Export(in Batch<Activity> batch) => ExportResult.Success;
    }
}
