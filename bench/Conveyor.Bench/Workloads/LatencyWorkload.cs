using System.Diagnostics;
using Conveyor.Bench.Infrastructure;
using Conveyor.Bench.Results;
using Conveyor.Bench.Systems;
using Conveyor.Sqlite;
using Hangfire;

namespace Conveyor.Bench.Workloads;

/// <summary>
/// Enqueue-to-start latency: with the worker running and idle, tasks are enqueued at <c>--rate</c>
/// per second for <c>--duration</c>, paced against absolute deadlines and not waiting for one
/// enqueue before sending the next. Each task carries the Stopwatch timestamp taken just before its
/// enqueue call; its handler records the time at which it starts. One second at the same rate
/// precedes the measured window and is not recorded.
/// </summary>
internal sealed class LatencyWorkload(BenchBackend backend = BenchBackend.Sqlite) : IWorkload
{
    private static readonly TimeSpan Settle = TimeSpan.FromMilliseconds(500);
    private static readonly TimeSpan WarmupWindow = TimeSpan.FromSeconds(1);

    public string Name => "latency";

    public string Title => "Enqueue-to-start latency (in-process, paced, worker idle)" + Variants.TitleSuffix(backend);

    public string Note => "From just before the enqueue call to the start of the handler, Stopwatch timestamps; 1 s of unrecorded sending precedes the window." +
        (backend == BenchBackend.Sqlite ? "" :
            " Hangfire's run is capped by --time-limit after its last send: a probe not started by then counts as infinitely late, and a percentile that falls on one reads \"> limit\"." +
            (backend == BenchBackend.Postgres ? " Hangfire.PostgreSql runs with EnableLongPolling (LISTEN/NOTIFY), not its default 15 s queue poll." : ""));

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

    internal static IReadOnlyList<Metric> Summarise(BenchSettings s, IReadOnlyList<double> samples, string prefix = "")
    {
        var label = $"{prefix}latency at {s.Rate:0}/s";
        return
        [
            new Metric($"{label}, p50", "ms", false, Percentiles.Of(samples, 50)),
            new Metric($"{label}, p95", "ms", false, Percentiles.Of(samples, 95)),
            new Metric($"{label}, p99", "ms", false, Percentiles.Of(samples, 99)),
        ];
    }

    internal static int Count(BenchSettings s, TimeSpan window) => Math.Max(1, (int)Math.Round(s.Rate * window.TotalSeconds));

    private static async Task<IReadOnlyList<Metric>> RunConveyorAsync(BenchSettings s, StoreTarget target, CancellationToken ct)
    {
        await using var store = target.OpenConveyor("latency", s);
        var recorder = new LatencyRecorder();
        await using var conveyor = await ConveyorInstance.StartAsync(store.Use, runWorker: true, s.Workers, recorder, ct, s.Prefetch);
        await Task.Delay(Settle, ct);

        async Task SendAsync(int count, bool measured)
        {
            var pacer = new Pacer(s.Rate);
            var pending = new List<Task>(count);
            for (var i = 0; i < count; i++)
            {
                await pacer.WaitForAsync(i, ct);
                var request = TaskRequest.Create(ProbeTask.Name, new ProbeArgs(Stopwatch.GetTimestamp(), measured));
                pending.Add(conveyor.Client.EnqueueAsync(request, ct));
            }
            await Task.WhenAll(pending);
        }

        var warm = Count(s, WarmupWindow);
        var measuredCount = Count(s, s.Duration);
        await SendAsync(warm, measured: false);
        recorder.Start();
        await SendAsync(measuredCount, measured: true);
        var timeout = TimeSpan.FromSeconds(60);
        await Wait.UntilAsync(() => recorder.Count >= measuredCount, TimeSpan.FromMilliseconds(10), timeout, "every probe to start", ct);
        await Wait.UntilAsync(async () => await conveyor.CountAsync(TaskState.Succeeded, ct) >= warm + measuredCount,
            TimeSpan.FromMilliseconds(10), timeout, "Conveyor's store to record every probe succeeded", ct);
        return Summarise(s, recorder.SamplesInMilliseconds());
    }

    private static async Task<IReadOnlyList<Metric>> RunHangfireAsync(BenchSettings s, BenchBackend backend, CancellationToken ct)
    {
        using var hangfire = new HangfireInstance(backend, s);
        var recorder = new LatencyRecorder();
        HangfireJobs.Recorder = recorder;
        try
        {
            hangfire.StartServer(s.Workers);
            await Task.Delay(Settle, ct);

            async Task SendAsync(int count, bool measured)
            {
                var pacer = new Pacer(s.Rate);
                for (var i = 0; i < count; i++)
                {
                    await pacer.WaitForAsync(i, ct);
                    var sent = Stopwatch.GetTimestamp();
                    hangfire.Client.Enqueue(() => HangfireJobs.Probe(sent, measured));
                }
            }

            var warm = Count(s, WarmupWindow);
            var measuredCount = Count(s, s.Duration);
            await SendAsync(warm, measured: false);
            recorder.Start();
            await SendAsync(measuredCount, measured: true);
            if (StoreTarget.IsServer(backend))
            {
                // Capped by --time-limit after the last send. Probes that have not started by then count as
                // infinitely late (reported as "> limit"), so the percentiles never flatter Hangfire.
                var deadline = Stopwatch.GetTimestamp() + (long)(s.TimeLimit.TotalSeconds * Stopwatch.Frequency);
                while (recorder.Count < measuredCount && Stopwatch.GetTimestamp() < deadline)
                {
                    await Task.Delay(TimeSpan.FromMilliseconds(10), ct);
                }
                var samples = recorder.SamplesInMilliseconds().ToList();
                if (samples.Count < measuredCount)
                {
                    BenchRunner.Log($"  (Hangfire: {measuredCount - samples.Count:N0} of {measuredCount:N0} probes had not started {s.TimeLimit.TotalSeconds:0} s after the last send; counted as > limit)");
                    samples.AddRange(Enumerable.Repeat(double.PositiveInfinity, measuredCount - samples.Count));
                }
                return Summarise(s, samples);
            }
            var timeout = TimeSpan.FromSeconds(60);
            await Wait.UntilAsync(() => recorder.Count >= measuredCount, TimeSpan.FromMilliseconds(10), timeout, "every probe to start", ct);
            await Wait.UntilAsync(() => hangfire.SucceededCount() >= warm + measuredCount, TimeSpan.FromMilliseconds(10), timeout,
                "Hangfire's storage to record every probe succeeded", ct);
            return Summarise(s, recorder.SamplesInMilliseconds());
        }
        finally
        {
            HangfireJobs.Recorder = null;
        }
    }
}
