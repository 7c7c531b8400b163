using System.Diagnostics;
using Conveyor.Bench.Infrastructure;
using Conveyor.Bench.Results;
using Conveyor.Bench.Systems;
using Conveyor.Sqlite;

namespace Conveyor.Bench.Workloads;

/// <summary>
/// Drain throughput: <c>--tasks</c> no-op tasks are enqueued first (not timed); then a worker with
/// <c>--workers</c> handlers at once is started, and the clock runs from its start until the store
/// reports every task succeeded. With <c>--rate-limit</c> or <c>--concurrency-limit</c> the worker runs the no-op task
/// under that limit (Conveyor only; Hangfire's case is unchanged): against the same drain without it, the cost of a limit.
/// </summary>
internal sealed class DrainWorkload(BenchBackend backend = BenchBackend.Sqlite) : IWorkload
{
    private static readonly TimeSpan PollInterval = TimeSpan.FromMilliseconds(5);
    private static readonly TimeSpan ServerPollInterval = TimeSpan.FromMilliseconds(20);

    public string Name => "drain";

    public string Title => "Drain throughput (in-process; tasks enqueued first, then workers started)" + Variants.TitleSuffix(backend);

    public string Note => "Timed from the worker's start until the store reports every task succeeded; worker start-up is inside the window for both. " +
        "CPU time per task (Conveyor): the process's CPU time (user and system, every thread) over the same window ÷ tasks; allocated per task: the bytes every thread of the process allocated over that window ÷ tasks." +
        (backend == BenchBackend.Sqlite ? "" :
            $" Each run uses {StoreTarget.FreshStore(backend)} on the same server. " +
            "Hangfire's run is capped by --time-limit: its untimed fill (pre-built Jobs from --concurrency threads) stops there short of --tasks, and its drain stops there too; " +
            "its figure is then the jobs its storage reports succeeded divided by the time elapsed, not an extrapolation of a full drain.");

    public IEnumerable<BenchCase> Cases(BenchSettings settings)
    {
        IEnumerable<StoreTarget> targets = backend == BenchBackend.Sqlite
            ? settings.Synchronous.Select(x => new StoreTarget(BenchBackend.Sqlite, x))
            : [new StoreTarget(backend)];
        foreach (var target in targets)
        {
            yield return new BenchCase(new CaseKey(Name, BenchSystem.Conveyor, target.ConveyorVariant),
                (s, ct) => RunConveyorAsync(s, target, ct));
        }
        if (StoreTarget.HasHangfire(backend))
        {
            yield return new BenchCase(new CaseKey(Name, BenchSystem.Hangfire, StoreTarget.HangfireVariant(backend)), (s, ct) => RunHangfireAsync(s, backend, ct));
        }
    }

    private static readonly Dictionary<string, string> UnsampledTraceContext = new()
    {
        [ConveyorDiagnostics.TraceParentHeader] = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00",
    };

    private static readonly Dictionary<string, string> PaddingHeader = new()
    {
        ["x-bench-pad"] = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00",
    };

    // About as many bytes in the row (27) as the trace context would take in a binary column of its own (26).
    private static readonly Dictionary<string, string> ShortHeader = new() { ["x"] = "0af7651916cd43dd844" };

    private static string MetricName(BenchSettings s, string telemetrySuffix = "") =>
        $"drain, {s.Workers} workers{s.LimitsSuffix}{(s.Analyze ? ", analyzed table" : "")}{telemetrySuffix}";

    // BENCH_TELEMETRY_AB=1: Conveyor's runs alternate between no telemetry and BENCH_TELEMETRY's (the warm-up with it, then
    // off, on, off, on…), each host built with the SDK or without it, so that both sides of the A/B share one process: its
    // JIT, and a machine whose speed moves between invocations. Each pair's ratio of steady rates is logged. The CLI
    // refuses the switch without a telemetry to alternate with.
    private static readonly bool AlternateTelemetry = Environment.GetEnvironmentVariable("BENCH_TELEMETRY_AB") == "1";
    private static readonly Dictionary<string, Alternation> Alternations = [];

    /// <summary>One case's runs so far (each case, such as SQLite NORMAL and FULL, alternates on its own).</summary>
    private sealed class Alternation
    {
        public int Runs;
        public double LastSteadyOff = double.NaN;
        public readonly List<double> PairRatios = [];
    }

    private static async Task<IReadOnlyList<Metric>> RunConveyorAsync(BenchSettings s, StoreTarget target, CancellationToken ct)
    {
        if (!AlternateTelemetry)
        {
            return await RunConveyorOnceAsync(s, target, "", ct);
        }
        if (!Alternations.TryGetValue(target.ConveyorVariant, out var alternation))
        {
            Alternations[target.ConveyorVariant] = alternation = new Alternation();
        }
        // With a warm-up, run 0 is it (with telemetry, so that its code is compiled too); the measured runs are then off,
        // on, off, on… — without one, the same from run 0.
        var run = alternation.Runs++ + (s.Warmup ? 0 : 1);
        var on = run % 2 == 0;
        var modeBefore = TelemetryCost.Mode;
        TelemetryCost.Mode = on ? TelemetryCost.Configured : "none";
        IReadOnlyList<Metric> metrics;
        try
        {
            metrics = await RunConveyorOnceAsync(s, target, on ? $", telemetry {TelemetryCost.Configured}" : ", telemetry off", ct);
        }
        finally
        {
            // Other workloads in this process build their hosts with BENCH_TELEMETRY's telemetry, as without the switch.
            TelemetryCost.Mode = modeBefore;
        }
        if (run > 0)
        {
            var steady = metrics.First(m => m.Name.StartsWith("steady", StringComparison.Ordinal)).Value;
            if (!on)
            {
                alternation.LastSteadyOff = steady;
            }
            else if (!double.IsNaN(alternation.LastSteadyOff) && !double.IsNaN(steady))
            {
                var ratios = alternation.PairRatios;
                ratios.Add(steady / alternation.LastSteadyOff);
                BenchRunner.Log($"  telemetry on ÷ off, steady, pair {ratios.Count}: {ratios[^1]:F3} " +
                    $"(median of {ratios.Count} pairs so far: {Percentiles.Median(ratios):F3}, " +
                    $"quartiles {Percentiles.Of(ratios, 25):F3}–{Percentiles.Of(ratios, 75):F3})");
            }
        }
        return metrics;
    }

    private static async Task<IReadOnlyList<Metric>> RunConveyorOnceAsync(BenchSettings s, StoreTarget target, string telemetrySuffix, CancellationToken ct)
    {
        await using var store = target.OpenConveyor("drain", s);
        await using (var producer = await ConveyorInstance.StartAsync(store.Use, runWorker: false, s.Workers, null, ct))
        {
            var request = new TaskRequest(NoopTask.Name, ConveyorInstance.TaskArgs);
            var headers = Environment.GetEnvironmentVariable("BENCH_HEADERS");
            if (headers is "1" or "pad" or "short")
            {
                // "1": every task stores the trace context a traced enqueue writes (not sampled), with no tracer listening:
                // what carrying the context costs the store, apart from the spans (docs/benchmarks.md, Telemetry). "pad":
                // a header of the same size under another name, which no attempt reads: the store's share of that cost; "short":
                // one as large as the context in a binary column.
                request = request with { Options = new EnqueueOptions { Headers = headers switch { "1" => UnsampledTraceContext, "pad" => PaddingHeader, _ => ShortHeader } } };
            }
            var batch = Enumerable.Repeat(request, s.BatchSize).ToArray();
            for (var n = 0; n < s.Tasks; n += s.BatchSize)
            {
                var size = Math.Min(s.BatchSize, s.Tasks - n);
                await producer.Client.EnqueueManyAsync(size == batch.Length ? batch : batch[..size], ct);
            }
            var queued = await producer.CountAsync(TaskState.Queued, ct);
            if (queued != s.Tasks)
            {
                throw new InvalidOperationException($"Expected {s.Tasks} queued tasks before the drain, the store holds {queued}.");
            }
        }
        if (s.Analyze)
        {
            await store.AnalyzeAsync(ct);
        }

        if (Environment.GetEnvironmentVariable("BENCH_MARK_DRAIN") is { Length: > 0 } mark)
        {
            // For a profiler attached from outside to record the drain only (the file's existence is the signal).
            await File.WriteAllTextAsync(mark, Environment.ProcessId.ToString(System.Globalization.CultureInfo.InvariantCulture), ct);
        }
        var start = Stopwatch.GetTimestamp();
        // CPU time of the whole process (the worker, and the harness polling every 5 ms) over the same window: a figure
        // that other processes' load moves less than the wall clock's, for A/B comparisons on a busy machine.
        var cpuStart = Environment.CpuUsage.TotalTime;
        var allocatedStart = GC.GetTotalAllocatedBytes();
        var pauseStart = GC.GetTotalPauseDuration();
        var gen0Start = GC.CollectionCount(0);
        var allocationSampler = Infrastructure.AllocationSampler.StartIfAsked();
        await using var worker = await ConveyorInstance.StartAsync(store.Use, runWorker: true, s.Workers, null, ct, s.Prefetch, s.Limits);
        var timeout = DrainTimeout(s);
        // The in-process counter is cheap to poll; the store is asked only once it says all are done,
        // and the clock stops when the store agrees.
        // The steady rate: from the first poll that sees 10 % of the tasks succeeded to the first that sees 90 %, so that
        // neither the worker's start (its host, the JIT's first calls, a listener's set-up) nor the tail is in it: what a
        // worker that runs for hours pays a task, which an A/B of per-task costs wants apart from the fixed ones.
        long tenth = 0, ninetieth = 0;
        long tenthCount = 0, ninetiethCount = 0;
        await Wait.UntilAsync(() =>
        {
            var succeeded = worker.Status.Succeeded;
            if (tenth == 0 && succeeded >= s.Tasks / 10)
            {
                (tenth, tenthCount) = (Stopwatch.GetTimestamp(), succeeded);
            }
            if (ninetieth == 0 && succeeded >= s.Tasks * 9L / 10)
            {
                (ninetieth, ninetiethCount) = (Stopwatch.GetTimestamp(), succeeded);
            }
            return succeeded >= s.Tasks;
        }, PollInterval, timeout, "Conveyor's worker to run every task", ct);
        await Wait.UntilAsync(async () => await worker.CountAsync(TaskState.Succeeded, ct) >= s.Tasks, PollInterval, timeout,
            "Conveyor's store to record every task succeeded", ct);
        var elapsed = Stopwatch.GetElapsedTime(start);
        var cpu = Environment.CpuUsage.TotalTime - cpuStart;
        var allocated = GC.GetTotalAllocatedBytes() - allocatedStart;
        var paused = GC.GetTotalPauseDuration() - pauseStart;
        var gen0 = GC.CollectionCount(0) - gen0Start;
        allocationSampler?.Report(s.Tasks);
        return
        [
            new Metric(MetricName(s, telemetrySuffix), "tasks/s", true, s.Tasks / elapsed.TotalSeconds),
            new Metric($"steady (10 % to 90 % done), {MetricName(s, telemetrySuffix)}", "tasks/s", true,
                ninetieth > tenth ? (ninetiethCount - tenthCount) / Stopwatch.GetElapsedTime(tenth, ninetieth).TotalSeconds : double.NaN),
            new Metric($"CPU time per task, {MetricName(s, telemetrySuffix)}", "µs", false, cpu.TotalMicroseconds / s.Tasks),
            new Metric($"Allocated per task, {MetricName(s, telemetrySuffix)}", "B", false, (double)allocated / s.Tasks),
            // The time every thread stood still for the GC, as a share of the drain: the writer thread waits too.
            new Metric($"GC pauses, {MetricName(s, telemetrySuffix)}", "%", false, 100 * paused.TotalSeconds / elapsed.TotalSeconds),
            new Metric($"Gen 0 collections, {MetricName(s, telemetrySuffix)}", "count", false, gen0),
        ];
    }

    private static async Task<IReadOnlyList<Metric>> RunHangfireAsync(BenchSettings s, BenchBackend backend, CancellationToken ct)
    {
        using var hangfire = new HangfireInstance(backend, s);
        var capped = StoreTarget.IsServer(backend);
        long total;
        if (capped)
        {
            // On a server Hangfire enqueues at hundreds to a few thousand per second: fill from
            // --concurrency threads, and stop at --time-limit with what was stored by then.
            var fillDeadline = Stopwatch.GetTimestamp() + (long)(s.TimeLimit.TotalSeconds * Stopwatch.Frequency);
            var claimed = 0;
            var threads = Enumerable.Range(0, s.Concurrency).Select(_ => new Thread(() =>
            {
                while (Interlocked.Increment(ref claimed) <= s.Tasks && Stopwatch.GetTimestamp() < fillDeadline)
                {
                    hangfire.EnqueuePrebuilt(HangfireInstance.NoopJob);
                }
            })).ToList();
            threads.ForEach(t => t.Start());
            threads.ForEach(t => t.Join());
            total = hangfire.EnqueuedCount();
            if (total < s.Tasks)
            {
                BenchRunner.Log($"  (Hangfire's fill reached the time limit: {total:N0} of {s.Tasks:N0} jobs enqueued; the drain runs on those)");
            }
        }
        else
        {
            for (var n = 0; n < s.Tasks; n++)
            {
                hangfire.EnqueuePrebuilt(HangfireInstance.NoopJob);
            }
            total = hangfire.EnqueuedCount();
            if (total != s.Tasks)
            {
                throw new InvalidOperationException($"Expected {s.Tasks} enqueued jobs before the drain, Hangfire holds {total}.");
            }
        }
        HangfireJobs.ResetCounter();

        var start = Stopwatch.GetTimestamp();
        hangfire.StartServer(s.Workers);
        if (capped)
        {
            var deadline = start + (long)(s.TimeLimit.TotalSeconds * Stopwatch.Frequency);
            while (Stopwatch.GetTimestamp() < deadline && hangfire.SucceededCount() < total)
            {
                // Hangfire's statistics query is not free on a server: poll it less often than the in-memory list.
                await Task.Delay(ServerPollInterval, ct);
            }
            var succeeded = hangfire.SucceededCount();
            var elapsedCapped = Stopwatch.GetElapsedTime(start);
            if (succeeded < total)
            {
                BenchRunner.Log($"  (Hangfire's drain reached the time limit: {succeeded:N0} of {total:N0} jobs succeeded in {elapsedCapped.TotalSeconds:0.0} s)");
            }
            return [new Metric(MetricName(s), "tasks/s", true, succeeded / elapsedCapped.TotalSeconds)];
        }
        var timeout = DrainTimeout(s);
        await Wait.UntilAsync(() => HangfireJobs.Performed >= s.Tasks, PollInterval, timeout, "Hangfire's workers to run every job", ct);
        await Wait.UntilAsync(() => hangfire.SucceededCount() >= s.Tasks, PollInterval, timeout,
            "Hangfire's storage to record every job succeeded", ct);
        var elapsed = Stopwatch.GetElapsedTime(start);
        return [new Metric(MetricName(s), "tasks/s", true, s.Tasks / elapsed.TotalSeconds)];
    }

    /// <summary>Generous: 2 minutes plus 1 ms per task.</summary>
    private static TimeSpan DrainTimeout(BenchSettings s) => TimeSpan.FromMinutes(2) + TimeSpan.FromMilliseconds(s.Tasks);
}
