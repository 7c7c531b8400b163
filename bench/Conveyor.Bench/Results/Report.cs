using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace Conveyor.Bench.Results;

/// <summary>The figures of one workload.</summary>
internal sealed record ReportSection(string Workload, string Title, string Note, IReadOnlyList<MetricSummary> Metrics, IReadOnlyList<SkippedCase> Skipped);

/// <summary>Everything one invocation measured.</summary>
internal sealed record BenchReport(MachineInfo Machine, BenchSettings Settings, IReadOnlyList<ReportSection> Sections);

/// <summary>Writes a <see cref="BenchReport"/> as markdown (stdout) and JSON (<c>--json</c>).</summary>
internal static class Report
{
    private static readonly JsonSerializerOptions JsonOptions = new()
    {
        WriteIndented = true,
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
        Converters = { new JsonStringEnumConverter(JsonNamingPolicy.CamelCase) },
    };

    public static string Format(double value, string unit)
    {
        if (double.IsNaN(value))
        {
            return "n/a";
        }
        if (double.IsPositiveInfinity(value))
        {
            return "> limit";
        }
        return unit switch
        {
            "ms" => value.ToString(value < 10 ? "0.00" : "0.0", CultureInfo.InvariantCulture),
            "µs" => value.ToString("0.0", CultureInfo.InvariantCulture),
            "MiB" => value.ToString("0.0", CultureInfo.InvariantCulture),
            "×" or "%" => value.ToString("0.00", CultureInfo.InvariantCulture),
            _ => value.ToString("N0", CultureInfo.InvariantCulture),
        };
    }

    public static string Markdown(BenchReport report)
    {
        var s = report.Settings;
        var m = report.Machine;
        var md = new StringBuilder();
        md.AppendLine("## Conveyor benchmark");
        md.AppendLine();
        md.AppendLine(CultureInfo.InvariantCulture, $"- Machine: {m.Processor}, {m.Cores} cores; {m.Os}");
        md.AppendLine(CultureInfo.InvariantCulture, $"- Runtime: {m.Runtime}, {m.Gc} GC; load average at start: {m.LoadAverageAtStart}");
        md.AppendLine(CultureInfo.InvariantCulture, $"- Started: {m.StartedAt:yyyy-MM-dd HH:mm:ss} UTC");
        var servers = s.Backends.Any(Systems.StoreTarget.IsServer) ? " (servers reached by the URLs given; Hangfire on the matching storage on the same server)" : "";
        md.AppendLine(CultureInfo.InvariantCulture, $"- Backends: {string.Join(", ", s.Backends.Select(Systems.StoreTarget.DisplayName))}{servers}");
        md.AppendLine(CultureInfo.InvariantCulture,
            $"- Settings: runs {s.Runs}, tasks {s.Tasks:N0}, batch size {s.BatchSize:N0}, concurrency {s.Concurrency}, workers {s.Workers}, " +
            $"prefetch {(s.Prefetch is { } prefetch ? prefetch.ToString(CultureInfo.InvariantCulture) + " (not Conveyor's default)" : "Conveyor's default")}, " +
            $"rate {s.Rate:0}/s for {s.Duration.TotalSeconds:0} s, time limit {s.TimeLimit.TotalSeconds:0} s, idle {s.Idle.TotalSeconds:0} s, warm-up {(s.Warmup ? "on" : "off")}");
        md.AppendLine("- Figures: median of the runs, (min–max) when more than one run. \"Advantage\" is how many times better Conveyor is " +
            "than Hangfire (or than a peer, in the columns \"Conveyor ÷ peer\"): throughput ÷ throughput, or the other's latency or memory ÷ Conveyor's; above 1 favours Conveyor.");
        foreach (var section in report.Sections)
        {
            md.AppendLine();
            AppendSection(md, section, s.Runs);
        }
        return md.ToString();
    }

    private static void AppendSection(StringBuilder md, ReportSection section, int runs)
    {
        md.AppendLine(CultureInfo.InvariantCulture, $"### {section.Title}");
        md.AppendLine();
        var conveyor = section.Metrics.Where(x => x.Case.System == BenchSystem.Conveyor).Select(x => x.Case).Distinct().ToList();
        // Hangfire first, then the peers, in the order of BenchSystem.
        var others = section.Metrics.Where(x => x.Case.System != BenchSystem.Conveyor).Select(x => x.Case).Distinct()
            .OrderBy(x => x.System).ToList();
        var columns = conveyor.Concat(others).ToList();
        // One ratio column per (other system, Conveyor variant); with Hangfire alone the headers stay as they were.
        var ratios = others.SelectMany(o => conveyor.Select(c => (Ours: c, Theirs: o))).ToList();
        string RatioHeader((CaseKey Ours, CaseKey Theirs) r) =>
            others.Count == 1 && others[0].System == BenchSystem.Hangfire
                ? $"Advantage, {r.Ours.Variant}"
                : conveyor.Count == 1 ? $"Conveyor ÷ {r.Theirs.System}" : $"{r.Ours.Variant} ÷ {r.Theirs.System}";
        if (columns.Count > 0)
        {
            var header = new List<string> { "Workload", "Unit" };
            header.AddRange(columns.Select(Header));
            header.AddRange(ratios.Select(RatioHeader));
            md.AppendLine("| " + string.Join(" | ", header) + " |");
            md.AppendLine("| " + string.Join(" | ", header.Select((_, i) => i < 2 ? "---" : "---:")) + " |");
            foreach (var name in section.Metrics.Select(x => x.Name).Distinct())
            {
                var row = section.Metrics.Where(x => x.Name == name).ToList();
                var unit = row[0].Unit;
                var cells = new List<string> { name, unit };
                cells.AddRange(columns.Select(c => row.FirstOrDefault(x => x.Case == c) is { } f ? Cell(f, runs) : "—"));
                cells.AddRange(ratios.Select(r => Advantage(row.FirstOrDefault(x => x.Case == r.Ours), row.FirstOrDefault(x => x.Case == r.Theirs))));
                md.AppendLine("| " + string.Join(" | ", cells) + " |");
            }
        }
        else
        {
            md.AppendLine("No figures.");
        }
        md.AppendLine();
        md.AppendLine(CultureInfo.InvariantCulture, $"_{section.Note}_");
        if (section.Skipped.Count > 0)
        {
            md.AppendLine();
        }
        foreach (var skip in section.Skipped)
        {
            md.AppendLine(CultureInfo.InvariantCulture, $"- Not measured: {skip.Case.System} ({skip.Case.Variant}): {skip.Reason}");
        }
    }

    private static string Header(CaseKey key) =>
        key.Variant.StartsWith(key.System.ToString(), StringComparison.Ordinal) ? key.Variant : $"{key.System}, {key.Variant}";

    private static string Cell(MetricSummary f, int runs) =>
        runs > 1 && f.Runs.Count > 1
            ? $"{Format(f.Median, f.Unit)} ({Format(f.Min, f.Unit)}–{Format(f.Max, f.Unit)})"
            : Format(f.Median, f.Unit);

    private static string Advantage(MetricSummary? ours, MetricSummary? theirs)
    {
        if (ours is null || theirs is null || ours.Median <= 0 || theirs.Median <= 0 || double.IsInfinity(ours.Median) || double.IsInfinity(theirs.Median))
        {
            return "—";
        }
        var ratio = ours.HigherIsBetter ? ours.Median / theirs.Median : theirs.Median / ours.Median;
        return ratio.ToString(ratio < 10 ? "0.00" : "0.0", CultureInfo.InvariantCulture) + "×";
    }

    public static async Task WriteJsonAsync(BenchReport report, string path, CancellationToken ct)
    {
        var document = new
        {
            report.Machine,
            Settings = new
            {
                Workloads = report.Settings.Workloads.Order(),
                Systems = report.Settings.Systems.Order(),
                Backends = report.Settings.Backends.Select(Systems.StoreTarget.DisplayName),
                Synchronous = report.Settings.Synchronous.Select(x => x.ToString().ToUpperInvariant()),
                report.Settings.Runs,
                report.Settings.Tasks,
                report.Settings.BatchSize,
                report.Settings.Concurrency,
                report.Settings.Workers,
                report.Settings.Prefetch,
                report.Settings.Rate,
                DurationSeconds = report.Settings.Duration.TotalSeconds,
                TimeLimitSeconds = report.Settings.TimeLimit.TotalSeconds,
                IdleSeconds = report.Settings.Idle.TotalSeconds,
                report.Settings.Warmup,
                report.Settings.Server,
            },
            Results = report.Sections.SelectMany(section => section.Metrics.Select(f => new
            {
                f.Case.Workload,
                f.Case.System,
                f.Case.Variant,
                Metric = f.Name,
                f.Unit,
                f.HigherIsBetter,
                f.Median,
                f.Min,
                f.Max,
                f.Runs,
            })),
            Skipped = report.Sections.SelectMany(section => section.Skipped.Select(x => new
            {
                x.Case.Workload,
                x.Case.System,
                x.Case.Variant,
                x.Reason,
            })),
        };
        var folder = Path.GetDirectoryName(Path.GetFullPath(path));
        if (!string.IsNullOrEmpty(folder))
        {
            Directory.CreateDirectory(folder);
        }
        await using var stream = File.Create(path);
        await JsonSerializer.SerializeAsync(stream, document, JsonOptions, ct);
    }
}
