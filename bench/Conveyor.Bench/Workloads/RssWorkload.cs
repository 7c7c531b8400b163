using System.Diagnostics;
using Conveyor.Bench.Infrastructure;
using Conveyor.Bench.Results;
using Conveyor.Bench.Systems;

namespace Conveyor.Bench.Workloads;

/// <summary>
/// Resident memory of an idle worker process: the process is started, left idle for <c>--idle</c>
/// seconds after it is ready, and <c>VmRSS</c> is read from <c>/proc/&lt;pid&gt;/status</c>. Measured
/// for <c>conveyor worker</c> (needs <c>--server</c>) and, as a like-for-like pair, for a minimal
/// generic host running a Conveyor worker and one running a Hangfire server (both this harness's
/// hidden <c>__idle-host</c> command). An in-process figure would include the harness and mean nothing.
/// </summary>
internal sealed class RssWorkload : IWorkload
{
    public string Name => "rss";

    public string Title => "Idle worker memory (separate process, VmRSS)";

    public string Note =>
        "Minimal hosts: the same generic host (console logging at Warning) running AddConveyor().AddNoopTask().UseSqlite() " +
        "or a Hangfire BackgroundJobServer on InMemory storage, with the same number of workers.";

    public IEnumerable<BenchCase> Cases(BenchSettings settings)
    {
        var worker = new CaseKey(Name, BenchSystem.Conveyor, "`conveyor worker`");
        yield return settings.ServerProblem() is { } problem
            ? BenchCase.Skip(worker, problem)
            : new BenchCase(worker, (s, ct) => MeasureAsync(s, "conveyor-worker", StartConveyorWorker, HasDatabase, ct)) { Warmup = false };
        yield return new BenchCase(new CaseKey(Name, BenchSystem.Conveyor, "minimal host"),
            (s, ct) => MeasureAsync(s, "conveyor-host", (dir, s) => StartIdleHost("conveyor", dir, s), PrintedReady, ct))
        { Warmup = false };
        yield return new BenchCase(new CaseKey(Name, BenchSystem.Hangfire, "minimal host"),
            (s, ct) => MeasureAsync(s, "hangfire-host", (dir, s) => StartIdleHost("hangfire", dir, s), PrintedReady, ct))
        { Warmup = false };
    }

    private static ChildProcess StartConveyorWorker(TempDirectory dir, BenchSettings s) =>
        ChildProcess.Start(s.Server!, s.WorkerCommand.Split(' ', StringSplitOptions.RemoveEmptyEntries),
            ConveyorServer.Environment(dir.File("conveyor.db"), Sqlite.SqliteSynchronous.Normal, s.Workers, port: null), dir.Path);

    /// <summary><c>conveyor worker</c> prints nothing we rely on: it is up once it has created its database.</summary>
    private static bool HasDatabase(ChildProcess process, TempDirectory dir) => File.Exists(dir.File("conveyor.db"));

    private static bool PrintedReady(ChildProcess process, TempDirectory dir) => process.Output.Contains(IdleHost.ReadyLine, StringComparison.Ordinal);

    private static ChildProcess StartIdleHost(string system, TempDirectory dir, BenchSettings s) =>
        ChildProcess.Start(typeof(RssWorkload).Assembly.Location,
            [IdleHost.Command, system, "--db", dir.File("conveyor.db"), "--workers", s.Workers.ToString(System.Globalization.CultureInfo.InvariantCulture)],
            new Dictionary<string, string>(), dir.Path);

    private static async Task<IReadOnlyList<Metric>> MeasureAsync(BenchSettings s, string label, Func<TempDirectory, BenchSettings, ChildProcess> start,
        Func<ChildProcess, TempDirectory, bool> ready, CancellationToken ct)
    {
        using var dir = new TempDirectory(label);
        using var process = start(dir, s);
        var started = Stopwatch.GetTimestamp();
        await Wait.UntilAsync(() => process.HasExited || ready(process, dir), TimeSpan.FromMilliseconds(50), TimeSpan.FromSeconds(60), $"{label} to start", ct);
        await Task.Delay(s.Idle, ct);
        if (process.HasExited)
        {
            throw new InvalidOperationException($"{label} exited after {Stopwatch.GetElapsedTime(started).TotalSeconds:0.0} s. Its last output:{Environment.NewLine}{process.Output}");
        }
        var kib = process.ReadRssKiB();
        return [new Metric($"idle worker RSS after {s.Idle.TotalSeconds:0} s, {s.Workers} workers", "MiB", false, kib / 1024.0)];
    }
}
