using System.Diagnostics;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using OpenTelemetry;
using OpenTelemetry.Metrics;
using OpenTelemetry.Trace;

namespace Conveyor.Bench.Systems;

/// <summary>The OpenTelemetry SDK over Conveyor's meter and activity source with exporters that discard what they are
/// given: metrics aggregated and collected every 5 s, spans sampled and batched, as the server's Prometheus and OTLP
/// exporters would, without the network. Every span is sampled unless <c>OTEL_TRACES_SAMPLER</c> is set, which the SDK
/// then honours as the server does (<c>OTEL_TRACES_SAMPLER=parentbased_traceidratio OTEL_TRACES_SAMPLER_ARG=0.1</c>:
/// one trace in ten, each whole).</summary>
internal static class TelemetryCost
{
    private static long s_spansExported;

    /// <summary>Spans the SDK handed to the exporter in this process so far (the sampled ones it did not drop).</summary>
    public static long SpansExported => Interlocked.Read(ref s_spansExported);

    /// <summary><c>BENCH_TELEMETRY</c>: what the process was asked to measure with.</summary>
    public static string? Configured { get; } = Environment.GetEnvironmentVariable("BENCH_TELEMETRY");

    /// <summary>What the hosts built from now on add (<see cref="Add"/>'s argument): <see cref="Configured"/> unless a
    /// workload that alternates with and without telemetry in one process (<c>BENCH_TELEMETRY_AB=1</c>) set it for its
    /// run.</summary>
    public static string? Mode { get; set; } = Configured;

    /// <summary>Whether <see cref="Mode"/> records traces.</summary>
    public static bool Traced => RecordsTraces(Mode);

    /// <summary>Whether <paramref name="what"/> adds anything (<c>1</c>, <c>all</c>, <c>metrics</c> or <c>traces</c>).</summary>
    public static bool AddsAnything(string? what) => RecordsMetrics(what) || RecordsTraces(what);

    private static bool RecordsMetrics(string? what) => what is "1" or "all" or "metrics";

    private static bool RecordsTraces(string? what) => what is "1" or "all" or "traces";

    /// <summary>Adds the SDK for <paramref name="what"/>: <c>1</c> or <c>all</c> both, <c>metrics</c> (what a server with
    /// <c>/metrics</c> runs by default) or <c>traces</c> (what <c>OTEL_EXPORTER_OTLP_ENDPOINT</c> adds) alone; anything
    /// else nothing. Returns whether it added anything.</summary>
    public static bool Add(HostApplicationBuilder host, string? what)
    {
        if (what == "listener")
        {
            // A bare listener on Conveyor's source that samples nothing, without the SDK: what the middleware costs apart
            // from the SDK (an experiment; not a mode a deployment runs).
            ActivitySource.AddActivityListener(BareListener.Value);
            return true;
        }
        var metrics = RecordsMetrics(what);
        var traces = RecordsTraces(what);
        if (!metrics && !traces)
        {
            return false;
        }
        // The bench's host is built empty (no environment in its configuration), and the SDK reads OTEL_* from the
        // configuration: give it the process's, as a server's host has them.
        host.Configuration.AddInMemoryCollection(Environment.GetEnvironmentVariables().Cast<System.Collections.DictionaryEntry>()
            .Where(e => e.Key is string name && name.StartsWith("OTEL_", StringComparison.Ordinal))
            .Select(e => new KeyValuePair<string, string?>((string)e.Key, e.Value as string)));
        var telemetry = host.Services.AddOpenTelemetry();
        if (metrics)
        {
            telemetry.WithMetrics(builder => builder
                .AddMeter(ConveyorDiagnostics.Name)
                .AddReader(new PeriodicExportingMetricReader(new DiscardMetrics(), exportIntervalMilliseconds: 5000)));
        }
        if (traces)
        {
            telemetry.WithTracing(builder =>
            {
                builder.AddSource(ConveyorDiagnostics.Name).AddProcessor(new BatchActivityExportProcessor(new DiscardSpans()));
                // A sampler set in code would win over the variable: set one only when the variable is not there.
                if (string.IsNullOrWhiteSpace(Environment.GetEnvironmentVariable("OTEL_TRACES_SAMPLER")))
                {
                    builder.SetSampler(new AlwaysOnSampler());
                }
            });
        }
        return true;
    }

    private static readonly Lazy<ActivityListener> BareListener = new(() => new ActivityListener
    {
        ShouldListenTo = source => source.Name == ConveyorDiagnostics.Name,
        Sample = (ref ActivityCreationOptions<ActivityContext> _) => ActivitySamplingResult.None,
    });

    private sealed class DiscardMetrics : BaseExporter<Metric>
    {
        public override ExportResult Export(in Batch<Metric> batch) => ExportResult.Success;
    }

    private sealed class DiscardSpans : BaseExporter<Activity>
    {
        public override ExportResult Export(in Batch<Activity> batch)
        {
            Interlocked.Add(ref s_spansExported, batch.Count);
            return ExportResult.Success;
        }
    }
}
