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
    public static void Add(IServiceCollection services) => services.AddOpenTelemetry()
        .WithMetrics(metrics => metrics
            .AddMeter(ConveyorDiagnostics.Name)
            .AddReader(new PeriodicExportingMetricReader(new DiscardMetrics(), exportIntervalMilliseconds: 5000)))
        .WithTracing(tracing => tracing
            .AddSource(ConveyorDiagnostics.Name)
            .SetSampler(new AlwaysOnSampler())
            .AddProcessor(new BatchActivityExportProcessor(new DiscardSpans())));

    private sealed class DiscardMetrics : BaseExporter<Metric>
    {
        public override ExportResult Export(in Batch<Metric> batch) => ExportResult.Success;
    }

    private sealed class DiscardSpans : BaseExporter<Activity>
    {
        public override ExportResult Export(in Batch<Activity> batch) => ExportResult.Success;
    }
}
