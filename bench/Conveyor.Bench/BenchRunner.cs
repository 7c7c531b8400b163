using Conveyor.Bench.Results;
using Conveyor.Bench.Systems;
using Conveyor.Bench.Workloads;

namespace Conveyor.Bench;

/// <summary>
/// Runs the selected workloads: per case an untimed warm-up, then <c>--runs</c> rounds in which
/// every case runs once, interleaved, so that drift in the machine's load touches all systems alike.
/// </summary>
internal sealed class BenchRunner(BenchSettings settings)
{
    public static IReadOnlyList<IWorkload> AllWorkloads { get; } =
        [new EnqueueWorkload(), new DrainWorkload(), new LatencyWorkload(), new HttpWorkload(), new RssWorkload(), new CrossProcessLatencyWorkload(), new EventsWorkload(), new WorkflowWorkload(), new ListWorkload(), new WorkerDrainWorkload()];

    /// <summary>The workloads made on <paramref name="backend"/>: all of them on SQLite; on a server all but the idle memory one.</summary>
    public static IReadOnlyList<IWorkload> Workloads(BenchBackend backend) => backend == BenchBackend.Sqlite
        ? AllWorkloads
        : [new EnqueueWorkload(backend), new DrainWorkload(backend), new LatencyWorkload(backend), new HttpWorkload(backend),
            new CrossProcessLatencyWorkload(backend), new EventsWorkload(backend), new WorkflowWorkload(backend), new ListWorkload(backend), new WorkerDrainWorkload(backend)];

    public async Task<BenchReport> RunAsync(CancellationToken ct)
    {
        var machine = MachineInfo.Read();
        var sections = new List<ReportSection>();
        foreach (var backend in settings.Backends)
        {
            foreach (var workload in Workloads(backend).Where(w => settings.Wants(w.Name)))
            {
                sections.Add(await RunWorkloadAsync(workload, ct));
            }
        }
        return new BenchReport(machine, settings, sections);
    }

    private async Task<ReportSection> RunWorkloadAsync(IWorkload workload, CancellationToken ct)
    {
        var cases = workload.Cases(settings).Where(c => settings.Includes(c.Key.System)).ToList();
        var skipped = cases.Where(c => c.SkipReason is not null).Select(c => new SkippedCase(c.Key, c.SkipReason!)).ToList();
        var active = cases.Where(c => c.SkipReason is null && c.Run is not null).ToList();
        var figures = new List<(CaseKey Case, Metric First, List<double> Runs)>();

        foreach (var skip in skipped)
        {
            Log($"{Describe(skip.Case)}: skipped: {skip.Reason}");
        }
        if (settings.Warmup)
        {
            foreach (var c in active.Where(c => c.Warmup).ToList())
            {
                Log($"{Describe(c.Key)}: warm-up");
                await TryRunAsync(c, settings.ForWarmup(), active, skipped, _ => { }, ct);
            }
        }
        for (var run = 1; run <= settings.Runs; run++)
        {
            foreach (var c in active.ToList())
            {
                Log($"{Describe(c.Key)}: run {run} of {settings.Runs}");
                await TryRunAsync(c, settings, active, skipped, metrics =>
                {
                    foreach (var metric in metrics)
                    {
                        Log($"  {metric.Name}: {Report.Format(metric.Value, metric.Unit)} {metric.Unit}");
                        var existing = figures.FindIndex(f => f.Case == c.Key && f.First.Name == metric.Name);
                        if (existing < 0)
                        {
                            figures.Add((c.Key, metric, [metric.Value]));
                        }
                        else
                        {
                            figures[existing].Runs.Add(metric.Value);
                        }
                    }
                }, ct);
            }
        }
        var summaries = figures.Select(f => new MetricSummary(f.Case, f.First.Name, f.First.Unit, f.First.HigherIsBetter, f.Runs)).ToList();
        return new ReportSection(workload.Name, workload.Title, workload.Note, summaries, skipped);
    }

    /// <summary>Runs a case once; on failure, reports it, drops the case from later runs and returns false.</summary>
    private static async Task<bool> TryRunAsync(BenchCase c, BenchSettings s, List<BenchCase> active, List<SkippedCase> skipped,
        Action<IReadOnlyList<Metric>> record, CancellationToken ct)
    {
        try
        {
            var metrics = await c.Run!(s, ct);
            record(metrics);
            return true;
        }
        catch (Exception ex) when (ex is not OperationCanceledException || !ct.IsCancellationRequested)
        {
            Log($"{Describe(c.Key)}: FAILED: {ex}");
            active.Remove(c);
            skipped.Add(new SkippedCase(c.Key, $"failed: {ex.GetType().Name}: {ex.Message}"));
            return false;
        }
        finally
        {
            // Leave no garbage from one case to be collected on another's clock.
            GC.Collect();
            GC.WaitForPendingFinalizers();
            GC.Collect();
        }
    }

    internal static string Describe(CaseKey key) => $"[{key.Workload}] {key.System} ({key.Variant})";

    internal static void Log(string message) => Console.Error.WriteLine($"{DateTime.Now:HH:mm:ss} {message}");
}
