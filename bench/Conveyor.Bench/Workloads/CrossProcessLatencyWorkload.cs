using System.Diagnostics;
using System.Globalization;
using Conveyor.Backends;
using Conveyor.Bench.Infrastructure;
using Conveyor.Bench.Results;
using Conveyor.Bench.Systems;
using Conveyor.RabbitMQ;
using Conveyor.Redis;
using Conveyor.Sqlite;
using StackExchange.Redis;

namespace Conveyor.Bench.Workloads;

/// <summary>
/// <c>xlatency</c>: enqueue-to-start latency with the producer and the worker in separate processes on one store, so that
/// every wake-up crosses processes through the backend's notifier. The worker is a child process (this harness's hidden
/// <c>__probe-worker</c> command: a generic host with <c>AddConveyor().AddNoopTask().Use…()</c>, a worker and the scheduler,
/// every option at its default, and the <c>bench.probe</c> task); the producer is this process, a host with no worker that
/// enqueues through <see cref="ITaskClient"/> at the paced rate (default 200/s). No HTTP on the path: this measures the
/// engine. Each probe carries the <see cref="Stopwatch"/> timestamp taken just before its enqueue; the worker takes its
/// own at the handler's start. On Linux both are CLOCK_MONOTONIC, one clock for every process on the machine.
/// </summary>
internal sealed class CrossProcessLatencyWorkload(BenchBackend backend = BenchBackend.Sqlite) : IWorkload
{
    public const double DefaultRate = 200;
    private static readonly TimeSpan Settle = TimeSpan.FromMilliseconds(500);

    public string Name => "xlatency";

    public string Title => "Enqueue-to-start latency, producer and worker in separate processes (paced, worker idle)" + Variants.TitleSuffix(backend);

    public string Note =>
        "The producer (this process, ITaskClient, no worker) and a worker process (a minimal host with AddConveyor().Use…(), defaults) share the store; " +
        "wake-ups cross processes through the backend's notifier. From just before the enqueue call to the handler's start, Stopwatch (CLOCK_MONOTONIC) " +
        $"timestamps taken in the two processes; 1 s of unrecorded sending precedes the window. Rate {DefaultRate:0}/s unless --rate is given. " +
        "Peers (bench/peers): a producer process and the peer's worker process(es), CLOCK_MONOTONIC in both; each probe's handler appends its latency to a Redis list.";

    public IEnumerable<BenchCase> Cases(BenchSettings settings)
    {
        IEnumerable<StoreTarget> targets = backend == BenchBackend.Sqlite
            ? settings.Synchronous.Select(x => new StoreTarget(BenchBackend.Sqlite, x))
            : [new StoreTarget(backend)];
        foreach (var target in targets)
        {
            yield return new BenchCase(new CaseKey(Name, BenchSystem.Conveyor, target.ConveyorVariant), (s, ct) => RunAsync(s, target, ct));
        }
        foreach (var peer in Peer.On(backend, settings))
        {
            yield return new BenchCase(new CaseKey(Name, peer.System, peer.Variant), (s, ct) => RunPeerAsync(s, peer, ct));
        }
    }

    /// <summary>A peer: its worker process(es) and its producer process (bench/peers/README.md); each probe carries the
    /// producer's CLOCK_MONOTONIC time before its enqueue, and its handler appends the difference to a Redis list.</summary>
    private static async Task<IReadOnlyList<Metric>> RunPeerAsync(BenchSettings settings, Peer peer, CancellationToken ct)
    {
        var s = settings.RateGiven ? settings : settings with { Rate = DefaultRate };
        await using var run = peer.Fresh(s);
        var warm = LatencyWorkload.Count(s, TimeSpan.FromSeconds(1));
        var measured = LatencyWorkload.Count(s, s.Duration);
        var workers = peer.StartWorkers(run);
        try
        {
            await Wait.UntilAsync(() => workers.Any(w => w.HasExited) || workers.All(w => w.Lines.Contains("ready")),
                TimeSpan.FromMilliseconds(20), TimeSpan.FromSeconds(60), $"{peer.Variant}'s worker to start", ct);
            if (workers.FirstOrDefault(w => w.HasExited) is { } dead)
            {
                throw new InvalidOperationException($"{peer.Variant}'s worker exited. Its last output:{Environment.NewLine}{dead.Output}");
            }
            await Task.Delay(Settle, ct);
            await peer.RunAsync(run, "latency", s.Duration + TimeSpan.FromMinutes(1), ct,
                s.Rate.ToString(CultureInfo.InvariantCulture), warm.ToString(CultureInfo.InvariantCulture), measured.ToString(CultureInfo.InvariantCulture));
            var redis = await run.InstrumentAsync();
            await Wait.UntilAsync(async () => await redis.ListLengthAsync(run.SamplesKey) >= warm + measured, TimeSpan.FromMilliseconds(20),
                TimeSpan.FromSeconds(60), $"{peer.Variant} to start every probe", ct);
            var samples = (await redis.ListRangeAsync(run.SamplesKey)).Select(v => ((string)v!).Split(' '))
                .Where(f => f[0] == "1").Select(f => double.Parse(f[1], CultureInfo.InvariantCulture) / 1e6).ToList();
            if (samples.Count != measured)
            {
                throw new InvalidOperationException($"{peer.Variant} recorded {samples.Count} measured probes, {measured} were sent.");
            }
            return LatencyWorkload.Summarise(s, samples, "cross-process ");
        }
        finally
        {
            foreach (var worker in workers)
            {
                worker.Dispose();
            }
        }
    }

    private static async Task<IReadOnlyList<Metric>> RunAsync(BenchSettings settings, StoreTarget target, CancellationToken ct)
    {
        var s = settings.RateGiven ? settings : settings with { Rate = DefaultRate };
        using var dir = new TempDirectory("xlatency");
        var store = SharedStore.Fresh(target, s, dir);
        try
        {
            var warm = LatencyWorkload.Count(s, TimeSpan.FromSeconds(1));
            var measured = LatencyWorkload.Count(s, s.Duration);
            var samplesFile = dir.File("samples.txt");
            using var worker = ChildProcess.Start(typeof(CrossProcessLatencyWorkload).Assembly.Location,
                [ProbeWorker.Command, .. store.Arguments, "--workers", s.Workers.ToString(CultureInfo.InvariantCulture),
                    "--expect", measured.ToString(CultureInfo.InvariantCulture), "--out", samplesFile],
                ConveyorRuntime.WorkerEnvironment(), dir.Path);
            await Wait.UntilAsync(() => worker.HasExited || worker.Output.Contains(ProbeWorker.ReadyLine, StringComparison.Ordinal),
                TimeSpan.FromMilliseconds(20), TimeSpan.FromSeconds(60), "the worker process to start", ct);
            if (worker.HasExited)
            {
                throw new InvalidOperationException($"The worker process exited. Its last output:{Environment.NewLine}{worker.Output}");
            }
            await using var producer = await ConveyorInstance.StartAsync(store.Use, runWorker: false, s.Workers, recorder: null, ct);
            await Task.Delay(Settle, ct);

            async Task SendAsync(int count, bool isMeasured)
            {
                var pacer = new Pacer(s.Rate);
                var pending = new List<Task>(count);
                for (var i = 0; i < count; i++)
                {
                    await pacer.WaitForAsync(i, ct);
                    var request = TaskRequest.Create(ProbeTask.Name, new ProbeArgs(Stopwatch.GetTimestamp(), isMeasured));
                    pending.Add(producer.Client.EnqueueAsync(request, ct));
                }
                await Task.WhenAll(pending);
            }

            await SendAsync(warm, isMeasured: false);
            await SendAsync(measured, isMeasured: true);
            await Wait.UntilAsync(() => File.Exists(samplesFile) || worker.HasExited, TimeSpan.FromMilliseconds(20), TimeSpan.FromSeconds(60),
                "the worker process to start every probe", ct);
            if (!File.Exists(samplesFile))
            {
                throw new InvalidOperationException($"The worker process exited before it started every probe. Its last output:{Environment.NewLine}{worker.Output}");
            }
            await Wait.UntilAsync(async () => await producer.CountAsync(TaskState.Succeeded, ct) >= warm + measured,
                TimeSpan.FromMilliseconds(20), TimeSpan.FromSeconds(60), "the store to record every probe succeeded", ct);
            var samples = (await File.ReadAllLinesAsync(samplesFile, ct)).Select(l => double.Parse(l, CultureInfo.InvariantCulture)).ToList();
            if (samples.Count != measured)
            {
                throw new InvalidOperationException($"The worker recorded {samples.Count} probes, {measured} were sent.");
            }
            return LatencyWorkload.Summarise(s, samples, "cross-process ");
        }
        finally
        {
            await store.CleanupAsync();
        }
    }
}

/// <summary>A store two processes open alike: its command-line form for the worker process and how to use it.</summary>
internal sealed record SharedStore(BenchBackend Backend, string Location, string Name, SqliteSynchronous Synchronous)
{
    public static SharedStore Fresh(StoreTarget target, BenchSettings s, TempDirectory dir) => target.Backend switch
    {
        BenchBackend.Sqlite => new(BenchBackend.Sqlite, dir.File("conveyor.db"), "", target.Synchronous),
        BenchBackend.Postgres => new(BenchBackend.Postgres, StoreTarget.Url(BenchBackend.Postgres, s), $"bench_x_{Guid.NewGuid():N}", SqliteSynchronous.Normal),
        BenchBackend.Redis => new(BenchBackend.Redis, StoreTarget.Url(BenchBackend.Redis, s), $"bx{Guid.NewGuid():N}"[..10], SqliteSynchronous.Normal),
        // The RabbitMQ queue role beside a SQLite store, as the other workloads pair them.
        _ => new(BenchBackend.RabbitMq, StoreTarget.Url(BenchBackend.RabbitMq, s), $"bench.x.{Guid.NewGuid():N}|{dir.File("conveyor.db")}", SqliteSynchronous.Normal),
    };

    public IEnumerable<string> Arguments =>
        ["--backend", Backend.ToString(), "--location", Location, "--name", Name, "--synchronous", Synchronous.ToString()];

    public static SharedStore Parse(string backend, string location, string name, string synchronous) =>
        new(Enum.Parse<BenchBackend>(backend), location, name, Enum.Parse<SqliteSynchronous>(synchronous));

    public void Use(ConveyorBuilder builder) => Place.Use(builder);

    /// <summary>Drops the schema, deletes the keys, or deletes the broker objects, and the SQLite file.</summary>
    public async Task CleanupAsync() => await StoreTarget.DropAsync(Place);

    /// <summary>Updates the engine's statistics of the tasks table (<c>--analyze</c>), as <see cref="StoreTarget"/> does.</summary>
    public Task AnalyzeAsync(CancellationToken ct) => StoreTarget.AnalyzeAsync(Place, ct);

    /// <summary>Makes the one task in the store <paramref name="count"/> succeeded ones (<c>--finished</c>); false where
    /// the store is not SQL.</summary>
    public Task<bool> FillFinishedAsync(long count, CancellationToken ct) => StoreTarget.FillFinishedAsync(Place, count, ct);

    /// <summary>The backend both processes open, as the command line names it.</summary>
    private BackendLocation Place => Backend switch
    {
        BenchBackend.Postgres => new PostgresDatabase(Location, Name),
        BenchBackend.Redis => new RedisKeyspace(Location, Name + ":"),
        // Name holds the broker prefix and the store's path.
        BenchBackend.RabbitMq => new RabbitMqBroker(Location, new SqliteDatabase(Name.Split('|')[1]), Name.Split('|')[0]),
        _ => new SqliteDatabase(Location, Synchronous),
    };
}

/// <summary>
/// The hidden <c>__probe-worker</c> command: a worker process for <c>xlatency</c>. It runs a Conveyor host with a worker
/// on the given store, prints <c>ready</c>, records the start of each measured <c>bench.probe</c> against the Stopwatch
/// timestamp its producer put in it, and once it has <c>--expect</c> samples writes them (milliseconds, one a line) to
/// <c>--out</c>; then it idles until it is killed.
/// </summary>
internal static class ProbeWorker
{
    public const string Command = "__probe-worker";
    public const string ReadyLine = "ready";

    public static async Task<int> RunAsync(SharedStore store, int workers, int expect, string output, CancellationToken ct)
    {
        var recorder = new LatencyRecorder();
        recorder.Start();
        await using (await ConveyorInstance.StartAsync(store.Use, runWorker: true, workers, recorder, ct))
        {
            Console.WriteLine(ReadyLine);
            try
            {
                await Wait.UntilAsync(() => recorder.Count >= expect, TimeSpan.FromMilliseconds(20), TimeSpan.FromHours(1), "every probe", ct);
                var temporary = output + ".tmp";
                await File.WriteAllLinesAsync(temporary, recorder.SamplesInMilliseconds().Select(v => v.ToString("R", CultureInfo.InvariantCulture)), ct);
                File.Move(temporary, output);
                await Task.Delay(Timeout.Infinite, ct);
            }
            catch (OperationCanceledException)
            {
                // Stopped by Ctrl+C or SIGTERM.
            }
        }
        return 0;
    }
}
