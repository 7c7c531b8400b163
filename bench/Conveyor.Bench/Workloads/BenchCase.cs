using Conveyor.Bench.Results;
using Conveyor.Sqlite;

namespace Conveyor.Bench.Workloads;

/// <summary>One measured configuration. <see cref="Run"/> performs one run (fresh temp data dir,
/// fresh host) with the settings given and returns its figures.</summary>
/// <param name="Key">Workload, system and variant.</param>
/// <param name="Run">One run; also used, with smaller settings, for the untimed warm-up.</param>
/// <param name="SkipReason">When set, the case is not run and the reason is reported.</param>
internal sealed record BenchCase(CaseKey Key, Func<BenchSettings, CancellationToken, Task<IReadOnlyList<Metric>>>? Run, string? SkipReason = null)
{
    /// <summary>Whether an untimed run with <see cref="BenchSettings.ForWarmup"/> precedes the measured runs. Default true.</summary>
    public bool Warmup { get; init; } = true;

    public static BenchCase Skip(CaseKey key, string reason) => new(key, null, reason);
}

/// <summary>A family of cases selected by <c>--workload</c>.</summary>
internal interface IWorkload
{
    /// <summary>Name used by <c>--workload</c>.</summary>
    string Name { get; }

    /// <summary>Heading of its table in the report.</summary>
    string Title { get; }

    /// <summary>What a reader of the table must know to read it right (printed under it).</summary>
    string Note { get; }

    IEnumerable<BenchCase> Cases(BenchSettings settings);
}

internal static class Variants
{
    public const string HangfireInMemory = "Hangfire.InMemory";

    public static string Sqlite(SqliteSynchronous synchronous) => $"SQLite {synchronous.ToString().ToUpperInvariant()}";

    /// <summary>Appended to a table's title for a backend other than SQLite (whose tables keep their titles).</summary>
    public static string TitleSuffix(Systems.BenchBackend backend) =>
        backend == Systems.BenchBackend.Sqlite ? "" : $" — {Systems.StoreTarget.DisplayName(backend)}";
}
