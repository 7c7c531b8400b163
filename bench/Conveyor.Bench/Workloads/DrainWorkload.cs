using System.Diagnostics;
using Conveyor.Bench.Infrastructure;
using Conveyor.Bench.Results;
using Conveyor.Bench.Systems;
using Conveyor.Sqlite;

namespace Conveyor.Bench.Workloads;

/// <summary>
/// Drain throughput: <c>--tasks</c> no-op tasks are enqueued first (not timed); then a worker with
/// <c>--workers</c> handlers at once is started, and the clock runs from its start until the store
/// reports every task succeeded.
/// </summary>
internal sealed class DrainWorkload : IWorkload
{
    private static readonly TimeSpan PollInterval = TimeSpan.FromMilliseconds(5);

    public string Name => "drain";

    public string Title => "Drain throughput (in-process; tasks enqueued first, then workers started)";

    public string Note => "Timed from the worker's start until the store reports every task succeeded; worker start-up is inside the window for both.";

    public IEnumerable<BenchCase> Cases(BenchSettings settings)
    {
        foreach (var synchronous in settings.Synchronous)
        {
            yield return new BenchCase(new CaseKey(Name, BenchSystem.Conveyor, Variants.Sqlite(synchronous)),
                (s, ct) => RunConveyorAsync(s, synchronous, ct));
        }
        yield return new BenchCase(new CaseKey(Name, BenchSystem.Hangfire, Variants.HangfireInMemory), RunHangfireAsync);
    }

    private static string MetricName(BenchSettings s) => $"drain, {s.Workers} workers";

    private static async Task<IReadOnlyList<Metric>> RunConveyorAsync(BenchSettings s, SqliteSynchronous synchronous, CancellationToken ct)
    {
        using var dir = new TempDirectory("drain");
        var path = dir.File("conveyor.db");
        await using (var producer = await ConveyorInstance.StartAsync(path, synchronous, runWorker: false, s.Workers, null, ct))
        {
            var batch = Enumerable.Repeat(new TaskRequest(NoopTask.Name), s.BatchSize).ToArray();
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

        var start = Stopwatch.GetTimestamp();
        await using var worker = await ConveyorInstance.StartAsync(path, synchronous, runWorker: true, s.Workers, null, ct, s.Prefetch);
        var timeout = DrainTimeout(s);
        // The in-process counter is cheap to poll; the store is asked only once it says all are done,
        // and the clock stops when the store agrees.
        await Wait.UntilAsync(() => worker.Status.Succeeded >= s.Tasks, PollInterval, timeout, "Conveyor's worker to run every task", ct);
        await Wait.UntilAsync(async () => await worker.CountAsync(TaskState.Succeeded, ct) >= s.Tasks, PollInterval, timeout,
            "Conveyor's store to record every task succeeded", ct);
        var elapsed = Stopwatch.GetElapsedTime(start);
        return [new Metric(MetricName(s), "tasks/s", true, s.Tasks / elapsed.TotalSeconds)];
    }

    private static async Task<IReadOnlyList<Metric>> RunHangfireAsync(BenchSettings s, CancellationToken ct)
    {
        using var hangfire = new HangfireInstance();
        for (var n = 0; n < s.Tasks; n++)
        {
            hangfire.EnqueuePrebuilt(HangfireInstance.NoopJob);
        }
        if (hangfire.EnqueuedCount() != s.Tasks)
        {
            throw new InvalidOperationException($"Expected {s.Tasks} enqueued jobs before the drain, Hangfire holds {hangfire.EnqueuedCount()}.");
        }
        HangfireJobs.ResetCounter();

        var start = Stopwatch.GetTimestamp();
        hangfire.StartServer(s.Workers);
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
