using System.Diagnostics;
using Conveyor.Bench.Infrastructure;
using Conveyor.Bench.Results;
using Conveyor.Bench.Systems;
using Hangfire;

namespace Conveyor.Bench.Workloads;

/// <summary>
/// Enqueue throughput with no worker running: one at a time (sequential awaits), from
/// <c>--concurrency</c> callers at once, and batched. Every figure is the count the store holds
/// afterwards divided by the elapsed time; a run stops at <c>--tasks</c> or <c>--time-limit</c>.
/// </summary>
internal sealed class EnqueueWorkload(BenchBackend backend = BenchBackend.Sqlite) : IWorkload
{
    public string Name => "enqueue";

    public string Title => "Enqueue throughput (in-process, no worker running)" + Variants.TitleSuffix(backend);

    public string Note => backend switch
    {
        BenchBackend.Sqlite => "Conveyor acknowledges an enqueue once SQLite has committed it; Hangfire.InMemory keeps jobs in memory only. ",
        _ => $"Each run stores in {StoreTarget.FreshStore(backend)} on the same server. " +
            "Every run of either system stops at --tasks or at --time-limit, whichever comes first; the figure is what the store holds divided by the time taken. ",
    } +
        "Hangfire has no batch API: its batched figure is its fastest path, a pre-built Job passed to Create, from one thread or many, whichever was faster. " +
        "Peers (bench/peers): one at a time only, from a producer process of their own with their plain API (Conveyor's producer is this process, no worker running).";

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
            yield return new BenchCase(new CaseKey(Name, BenchSystem.Hangfire, StoreTarget.HangfireVariant(backend)), (s, ct) => Task.FromResult(RunHangfire(s, backend)));
        }
        foreach (var peer in Peer.On(backend, settings))
        {
            yield return new BenchCase(new CaseKey(Name, peer.System, peer.Variant), (s, ct) => RunPeerAsync(s, peer, ct));
        }
    }

    /// <summary>A peer's producer process enqueues one task at a time with the peer's plain API (bench/peers/README.md), and
    /// reports the count and the time from its first call to its last acknowledgement; its store must hold that count.</summary>
    private static async Task<IReadOnlyList<Metric>> RunPeerAsync(BenchSettings s, Peer peer, CancellationToken ct)
    {
        await using var run = peer.Fresh(s);
        var lines = await peer.RunAsync(run, "enqueue", s.TimeLimit + TimeSpan.FromMinutes(2), ct,
            s.Tasks.ToString(System.Globalization.CultureInfo.InvariantCulture), s.TimeLimit.TotalSeconds.ToString(System.Globalization.CultureInfo.InvariantCulture));
        var count = Peer.Read(lines, "enqueued");
        var seconds = Peer.Read(lines, "enqueued", 2);
        // The first call connects (and declares) and is not timed, as Conveyor's host is started before its clock.
        var warm = lines.Any(l => l.StartsWith("warm ", StringComparison.Ordinal)) ? Peer.Read(lines, "warm") : 0;
        var stored = Peer.Read(lines, "stored");
        if (stored != count + warm)
        {
            throw new InvalidOperationException($"{peer.Variant} acknowledged {count + warm} enqueues but its store holds {stored}.");
        }
        return [new Metric(Single, "tasks/s", true, count / seconds)];
    }

    private static string Single => "enqueue, one at a time";
    private static string Concurrent(BenchSettings s) => $"enqueue, {s.Concurrency} concurrent callers";
    private static string Batched(BenchSettings s) => $"enqueue, batched ({s.BatchSize:N0} per call)";

    private static async Task<IReadOnlyList<Metric>> RunConveyorAsync(BenchSettings s, StoreTarget target, CancellationToken ct)
    {
        var request = new TaskRequest(NoopTask.Name);
        var single = await MeasureConveyorAsync(s, target, async (client, deadline) =>
        {
            var n = 0;
            while (n < s.Tasks && Stopwatch.GetTimestamp() < deadline)
            {
                await client.EnqueueAsync(request, ct);
                n++;
            }
            return n;
        }, ct);
        var concurrent = await MeasureConveyorAsync(s, target, async (client, deadline) =>
        {
            var claimed = 0;
            var done = 0;
            var callers = Enumerable.Range(0, s.Concurrency).Select(_ => Task.Run(async () =>
            {
                while (Interlocked.Increment(ref claimed) <= s.Tasks && Stopwatch.GetTimestamp() < deadline)
                {
                    await client.EnqueueAsync(request, ct);
                    Interlocked.Increment(ref done);
                }
            }, ct));
            await Task.WhenAll(callers);
            return done;
        }, ct);
        var batch = Enumerable.Repeat(request, s.BatchSize).ToArray();
        var batched = await MeasureConveyorAsync(s, target, async (client, deadline) =>
        {
            var n = 0;
            while (n < s.Tasks && Stopwatch.GetTimestamp() < deadline)
            {
                var size = Math.Min(s.BatchSize, s.Tasks - n);
                await client.EnqueueManyAsync(size == batch.Length ? batch : batch[..size], ct);
                n += size;
            }
            return n;
        }, ct);
        return
        [
            new Metric(Single, "tasks/s", true, single),
            new Metric(Concurrent(s), "tasks/s", true, concurrent),
            new Metric(Batched(s), "tasks/s", true, batched),
        ];
    }

    /// <summary>Runs <paramref name="enqueue"/> on a fresh database and returns the rate at which the
    /// store gained queued tasks. The enqueued count is checked against the store.</summary>
    private static async Task<double> MeasureConveyorAsync(BenchSettings s, StoreTarget target,
        Func<ITaskClient, long, Task<int>> enqueue, CancellationToken ct)
    {
        await using var store = target.OpenConveyor("enqueue", s);
        await using var conveyor = await ConveyorInstance.StartAsync(store.Use, runWorker: false, s.Workers, null, ct);
        var start = Stopwatch.GetTimestamp();
        var deadline = start + (long)(s.TimeLimit.TotalSeconds * Stopwatch.Frequency);
        var count = await enqueue(conveyor.Client, deadline);
        var elapsed = Stopwatch.GetElapsedTime(start);
        var stored = await conveyor.CountAsync(TaskState.Queued, ct);
        if (stored != count)
        {
            throw new InvalidOperationException($"Conveyor acknowledged {count} enqueues but the store holds {stored} queued tasks.");
        }
        return stored / elapsed.TotalSeconds;
    }

    private static IReadOnlyList<Metric> RunHangfire(BenchSettings s, BenchBackend backend)
    {
        var single = MeasureHangfire(s, backend, (hangfire, deadline) =>
        {
            var n = 0;
            while (n < s.Tasks && Stopwatch.GetTimestamp() < deadline)
            {
                hangfire.Client.Enqueue(() => HangfireJobs.Noop());
                n++;
            }
            return n;
        });
        var concurrent = MeasureHangfire(s, backend, (hangfire, deadline) =>
            OnThreads(s, deadline, () => hangfire.Client.Enqueue(() => HangfireJobs.Noop())));
        // Hangfire has no batch API. Its fastest path is a pre-built Job (no expression parsing) passed
        // to IBackgroundJobClient.Create, either from one thread or from --concurrency threads, whichever
        // is faster on this machine: both are measured and the better counts.
        var prebuiltOne = MeasureHangfire(s, backend, (hangfire, deadline) =>
        {
            var n = 0;
            while (n < s.Tasks && Stopwatch.GetTimestamp() < deadline)
            {
                hangfire.EnqueuePrebuilt(HangfireInstance.NoopJob);
                n++;
            }
            return n;
        });
        var prebuiltMany = MeasureHangfire(s, backend, (hangfire, deadline) =>
            OnThreads(s, deadline, () => hangfire.EnqueuePrebuilt(HangfireInstance.NoopJob)));
        BenchRunner.Log($"  (Hangfire pre-built Job: {prebuiltOne:N0}/s from one thread, {prebuiltMany:N0}/s from {s.Concurrency} threads; the better counts as batched)");
        var batched = Math.Max(prebuiltOne, prebuiltMany);
        return
        [
            new Metric(Single, "tasks/s", true, single),
            new Metric(Concurrent(s), "tasks/s", true, concurrent),
            new Metric(Batched(s), "tasks/s", true, batched),
        ];
    }

    /// <summary>Hangfire's client is synchronous: concurrent callers are dedicated threads.</summary>
    private static int OnThreads(BenchSettings s, long deadline, Action enqueue)
    {
        var claimed = 0;
        var done = 0;
        var threads = Enumerable.Range(0, s.Concurrency).Select(_ => new Thread(() =>
        {
            while (Interlocked.Increment(ref claimed) <= s.Tasks && Stopwatch.GetTimestamp() < deadline)
            {
                enqueue();
                Interlocked.Increment(ref done);
            }
        })).ToList();
        threads.ForEach(t => t.Start());
        threads.ForEach(t => t.Join());
        return done;
    }

    private static double MeasureHangfire(BenchSettings s, BenchBackend backend, Func<HangfireInstance, long, int> enqueue)
    {
        using var hangfire = new HangfireInstance(backend, s);
        var start = Stopwatch.GetTimestamp();
        var deadline = start + (long)(s.TimeLimit.TotalSeconds * Stopwatch.Frequency);
        var count = enqueue(hangfire, deadline);
        var elapsed = Stopwatch.GetElapsedTime(start);
        var stored = hangfire.EnqueuedCount();
        if (stored != count)
        {
            throw new InvalidOperationException($"Hangfire acknowledged {count} enqueues but its storage holds {stored} enqueued jobs.");
        }
        return stored / elapsed.TotalSeconds;
    }
}
