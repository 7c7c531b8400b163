namespace Conveyor.Bench.Results;

/// <summary>Which product a figure belongs to.</summary>
internal enum BenchSystem
{
    Conveyor,
    Hangfire,
    /// <summary>Graphile Worker (Node, PostgreSQL), a peer (bench/peers/graphile).</summary>
    Graphile,
    /// <summary>BullMQ (Node, Redis), a peer (bench/peers/bullmq).</summary>
    BullMQ,
    /// <summary>Sidekiq (Ruby, Redis), a peer (bench/peers/sidekiq).</summary>
    Sidekiq,
    /// <summary>MassTransit (C#, RabbitMQ), a peer run by this harness's hidden <c>__masstransit</c> command.</summary>
    MassTransit,
    /// <summary>Celery (Python, RabbitMQ), a peer (bench/peers/celery).</summary>
    Celery,
}

/// <summary>One figure from one run.</summary>
/// <param name="Name">What was measured, such as <c>drain</c> or <c>latency p99</c>; the row of the table.</param>
/// <param name="Unit">Unit, such as <c>tasks/s</c>, <c>ms</c> or <c>MiB</c>.</param>
/// <param name="HigherIsBetter">True for throughput, false for latency and memory.</param>
/// <param name="Value">The figure.</param>
internal sealed record Metric(string Name, string Unit, bool HigherIsBetter, double Value);

/// <summary>A measured configuration: one system, one variant (storage, setting) of one workload.</summary>
/// <param name="Workload">Workload family: enqueue, drain, latency, http, rss.</param>
/// <param name="System">Conveyor or Hangfire.</param>
/// <param name="Variant">Storage and settings, such as <c>SQLite NORMAL</c>; a column of the table.</param>
internal sealed record CaseKey(string Workload, BenchSystem System, string Variant);

/// <summary>All runs of one metric of one case, summarised.</summary>
internal sealed record MetricSummary(CaseKey Case, string Name, string Unit, bool HigherIsBetter, IReadOnlyList<double> Runs)
{
    public double Median => Infrastructure.Percentiles.Median(Runs);
    public double Min => Runs.Count == 0 ? double.NaN : Runs.Min();
    public double Max => Runs.Count == 0 ? double.NaN : Runs.Max();
}

/// <summary>A case that was not measured, and why (shown under the table).</summary>
internal sealed record SkippedCase(CaseKey Case, string Reason);
