using System.Diagnostics;
using System.Globalization;
using Conveyor.Bench.Infrastructure;
using Conveyor.Bench.Results;
using Conveyor.Bench.Systems;
using StackExchange.Redis;

namespace Conveyor.Bench.Workloads;

/// <summary>
/// <c>xdrain</c>: the drain as the peers are measured, every system alike. <c>--tasks</c> no-op tasks are stored first
/// (untimed; with <c>--analyze</c> the table is analyzed), each doing one <c>INCR</c> on the instrument Redis
/// (<c>--redis-url</c>); then the worker process(es) are started and the instrument's counter is polled every 5 ms until it
/// reaches the total. Reported: tasks per second from the worker's start (start-up inside), the steady rate between 10 % and
/// 90 % done, the time to the first task done, and the worker's peak RSS (VmHWM of its processes, added up).
/// Conveyor's worker is this harness's hidden <c>__drain-worker</c> command (a generic host, <c>AddConveyor().Use…()</c>,
/// default options, <c>--workers</c> handlers); the peers' are theirs (bench/peers).
/// </summary>
internal sealed class WorkerDrainWorkload(BenchBackend backend = BenchBackend.Sqlite) : IWorkload
{
    public string Name => "xdrain";

    public string Title => "Drain by a worker process, every system alike (tasks stored first, then the worker started)" + Variants.TitleSuffix(backend);

    public string Note =>
        "Each no-op task does one INCR on the instrument Redis; the clock runs from the worker process's start until the counter reaches the total " +
        "(polled every 5 ms), so start-up is inside the first figure and outside the steady one (10 % to 90 % done). Peak RSS is VmHWM of the worker's " +
        "processes added up (Sidekiq's two, Celery's prefork children). Conveyor: a worker process with its default options" +
        (backend == BenchBackend.RabbitMq ? " (RabbitMQ with its SQLite store, as in the other tables)" : "") + ".";

    public IEnumerable<BenchCase> Cases(BenchSettings settings)
    {
        IEnumerable<StoreTarget> targets = backend == BenchBackend.Sqlite
            ? settings.Synchronous.Select(x => new StoreTarget(BenchBackend.Sqlite, x))
            : [new StoreTarget(backend)];
        foreach (var target in targets)
        {
            var key = new CaseKey(Name, BenchSystem.Conveyor, target.ConveyorVariant);
            yield return settings.RedisUrl is null
                ? BenchCase.Skip(key, "xdrain counts tasks with an INCR on Redis: pass --redis-url or set CONVEYOR_TEST_REDIS")
                : new BenchCase(key, (s, ct) => RunConveyorAsync(s, target, ct));
        }
        if (backend == BenchBackend.Sqlite)
        {
            // The embedded peer: Hangfire.InMemory, whose store lives in its worker's process (filled there, untimed).
            var key = new CaseKey(Name, BenchSystem.Hangfire, Variants.HangfireInMemory);
            yield return settings.RedisUrl is null
                ? BenchCase.Skip(key, "xdrain counts tasks with an INCR on Redis: pass --redis-url or set CONVEYOR_TEST_REDIS")
                : new BenchCase(key, (s, ct) => EachSize(s, RunHangfireAsync, ct));
        }
        foreach (var peer in Peer.On(backend, settings))
        {
            yield return new BenchCase(new CaseKey(Name, peer.System, peer.Variant), (s, ct) => EachSize(s, (s, sfx, ct) => RunPeerAsync(s, peer, sfx, ct), ct));
        }
    }

    /// <summary>One run of every <c>--drain-sizes</c> size in turn, each size's metrics named after it.</summary>
    private async Task<IReadOnlyList<Metric>> EachSize(BenchSettings s,
        Func<BenchSettings, string, CancellationToken, Task<IReadOnlyList<Metric>>> run, CancellationToken ct)
    {
        var metrics = new List<Metric>();
        foreach (var size in s.XDrainSizes)
        {
            // Redis keeps no statistics: --analyze changes nothing there, and the name does not say it did.
            var analyzed = s.Analyze && backend != BenchBackend.Redis ? ", analyzed" : "";
            var kept = s.Finished > 0 ? string.Create(CultureInfo.InvariantCulture, $", {s.Finished:N0} finished kept") : "";
            var suffix = string.Create(CultureInfo.InvariantCulture, $", {size:N0} queued{kept}{analyzed}");
            metrics.AddRange(await run(s with { Tasks = size }, suffix, ct));
        }
        return metrics;
    }

    private Task<IReadOnlyList<Metric>> RunConveyorAsync(BenchSettings s, StoreTarget target, CancellationToken ct) =>
        EachSize(s, (s, suffix, ct) => RunConveyorAsync(s, target, suffix, ct), ct);

    private static async Task<IReadOnlyList<Metric>> RunConveyorAsync(BenchSettings s, StoreTarget target, string suffix, CancellationToken ct)
    {
        using var dir = new TempDirectory("xdrain");
        var store = SharedStore.Fresh(target, s, dir);
        var counter = $"bench:xdrain_{Guid.NewGuid():N}:count";
        await using var redis = await ConnectionMultiplexer.ConnectAsync(Conveyor.Redis.RedisUrl.Parse(s.RedisUrl!));
        try
        {
            await using (var producer = await ConveyorInstance.StartAsync(store.Use, runWorker: false, s.Workers, null, ct))
            {
                if (s.Finished > 0)
                {
                    // One task made into the results kept, before the queued tasks, as older work is.
                    await producer.Client.EnqueueAsync(new TaskRequest(IncrTask.Name), ct);
                    if (!await store.FillFinishedAsync(s.Finished, ct))
                    {
                        throw new InvalidOperationException($"--finished is measured on the SQL stores; {target.Backend} is not one.");
                    }
                }
                var batch = Enumerable.Repeat(new TaskRequest(IncrTask.Name), s.BatchSize).ToArray();
                for (var n = 0; n < s.Tasks; n += s.BatchSize)
                {
                    var size = Math.Min(s.BatchSize, s.Tasks - n);
                    await producer.Client.EnqueueManyAsync(size == batch.Length ? batch : batch[..size], ct);
                }
            }
            if (s.Analyze)
            {
                await store.AnalyzeAsync(ct);
            }
            var metrics = await DrainClock.MeasureAsync(s.Tasks, redis.GetDatabase(), counter, () =>
            [
                ChildProcess.Start(typeof(WorkerDrainWorkload).Assembly.Location,
                    [DrainWorker.Command, .. store.Arguments, "--workers", s.Workers.ToString(CultureInfo.InvariantCulture),
                        "--instrument", s.RedisUrl!, "--counter", counter],
                    ConveyorRuntime.WorkerEnvironment(), dir.Path),
            ], suffix, ct);
            await using (var checker = await ConveyorInstance.StartAsync(store.Use, runWorker: false, s.Workers, null, ct))
            {
                await Wait.UntilAsync(async () => await checker.CountAsync(TaskState.Succeeded, ct) >= s.Tasks + s.Finished, TimeSpan.FromMilliseconds(20),
                    TimeSpan.FromSeconds(30), "Conveyor's store to record every task succeeded", ct);
            }
            return metrics;
        }
        finally
        {
            await redis.GetDatabase().KeyDeleteAsync(counter);
            await store.CleanupAsync();
        }
    }

    private static async Task<IReadOnlyList<Metric>> RunHangfireAsync(BenchSettings s, string suffix, CancellationToken ct)
    {
        using var dir = new TempDirectory("xdrain-hangfire");
        var counter = $"bench:xdrain_{Guid.NewGuid():N}:count";
        var go = dir.File("go");
        await using var redis = await ConnectionMultiplexer.ConnectAsync(Conveyor.Redis.RedisUrl.Parse(s.RedisUrl!));
        var spawned = Stopwatch.GetTimestamp();
        var worker = ChildProcess.Start(typeof(WorkerDrainWorkload).Assembly.Location,
            [HangfireDrainWorker.Command, "--tasks", s.Tasks.ToString(CultureInfo.InvariantCulture), "--workers", s.Workers.ToString(CultureInfo.InvariantCulture),
                "--instrument", s.RedisUrl!, "--counter", counter, "--go", go],
            new Dictionary<string, string>(), dir.Path);
        try
        {
            await Wait.UntilAsync(() => worker.HasExited || worker.Lines.Contains(HangfireDrainWorker.FilledLine), TimeSpan.FromMilliseconds(20),
                TimeSpan.FromMinutes(5), "Hangfire.InMemory's worker process to fill its storage", ct);
            if (worker.HasExited)
            {
                throw new InvalidOperationException($"Hangfire's worker process exited. Its last output:{Environment.NewLine}{worker.Output}");
            }
            // The store is in that process and was filled first: the clock runs from the go signal, and the process's own
            // start (from its spawn to its first line, before the fill) is added to it, so that start-up counts as for the others.
            var up = Stopwatch.GetTimestamp() - spawned;
            var upLine = worker.Lines.FirstOrDefault(l => l.StartsWith(HangfireDrainWorker.UpLine + " ", StringComparison.Ordinal));
            var startUp = upLine is null
                ? TimeSpan.Zero
                : TimeSpan.FromSeconds((long.Parse(upLine.AsSpan(HangfireDrainWorker.UpLine.Length + 1), CultureInfo.InvariantCulture) - spawned) / (double)Stopwatch.Frequency);
            BenchRunner.Log($"  (Hangfire.InMemory: process start {startUp.TotalMilliseconds:0} ms, added to its clock; fill done {up / (double)Stopwatch.Frequency:0.0} s after the spawn)");
            return await DrainClock.MeasureAsync(s.Tasks, redis.GetDatabase(), counter, () =>
            {
                File.WriteAllText(go, "");
                return [worker];
            }, suffix, ct, startUp);
        }
        finally
        {
            worker.Dispose();
            await redis.GetDatabase().KeyDeleteAsync(counter);
        }
    }

    private static async Task<IReadOnlyList<Metric>> RunPeerAsync(BenchSettings s, Peer peer, string suffix, CancellationToken ct)
    {
        await using var run = peer.Fresh(s);
        var filled = Peer.Read(await peer.RunAsync(run, "fill", TimeSpan.FromMinutes(10), ct, s.Tasks.ToString(CultureInfo.InvariantCulture)), "filled");
        if ((int)filled != s.Tasks)
        {
            throw new InvalidOperationException($"{peer.Variant} holds {filled:N0} queued tasks after the fill, not {s.Tasks:N0}.");
        }
        if (s.Analyze && peer.Backend == BenchBackend.Postgres)
        {
            await peer.RunAsync(run, "analyze", TimeSpan.FromMinutes(2), ct);
        }
        return await DrainClock.MeasureAsync(s.Tasks, await run.InstrumentAsync(), run.CounterKey, () => peer.StartWorkers(run), suffix, ct);
    }
}

/// <summary><c>bench.incr</c>: the no-op task of <c>xdrain</c>, one <c>INCR</c> on the instrument Redis.</summary>
internal sealed class IncrTask : ITaskHandler<NoArgs>
{
    public const string Name = "bench.incr";

    /// <summary>Set by <see cref="DrainWorker"/> before its host starts: the instrument's connection, opened beside the
    /// host's start (as the Node peers' ioredis connects in the background) and awaited by the first task.</summary>
    internal static Task<IDatabase>? Database { get; set; }

    internal static RedisKey Counter { get; set; }

    public Task HandleAsync(NoArgs args, TaskContext context, CancellationToken cancellationToken) =>
        Database!.IsCompletedSuccessfully ? Database.Result.StringIncrementAsync(Counter) : IncrementOnceConnectedAsync();

    private static async Task IncrementOnceConnectedAsync() => await (await Database!).StringIncrementAsync(Counter);
}

/// <summary>The hidden <c>__hangfire-drain-worker</c> command: Hangfire 1.8 on Hangfire.InMemory (configured as in the other tables)
/// fills its storage with <c>--tasks</c> jobs of <see cref="HangfireIncr.Incr"/>, prints <c>filled</c>, waits for the <c>--go</c>
/// file, and starts a server with <c>--workers</c> workers; it runs until it is killed.</summary>
internal static class HangfireDrainWorker
{
    public const string Command = "__hangfire-drain-worker";
    public const string FilledLine = "filled";
    public const string UpLine = "up";

    public static async Task<int> RunAsync(int tasks, int workers, string instrument, string counter, string go, CancellationToken ct)
    {
        // The Stopwatch (CLOCK_MONOTONIC) time at which the process runs its own code: its start-up, for the harness.
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{UpLine} {Stopwatch.GetTimestamp()}"));
        await using var redis = await ConnectionMultiplexer.ConnectAsync(Conveyor.Redis.RedisUrl.Parse(instrument));
        HangfireIncr.Database = redis.GetDatabase();
        HangfireIncr.Counter = counter;
        using var hangfire = new HangfireInstance();
        var job = Hangfire.Common.Job.FromExpression(() => HangfireIncr.Incr());
        for (var n = 0; n < tasks; n++)
        {
            hangfire.EnqueuePrebuilt(job);
        }
        Console.WriteLine(FilledLine);
        while (!File.Exists(go))
        {
            await Task.Delay(1, ct);
        }
        hangfire.StartServer(workers);
        try
        {
            await Task.Delay(Timeout.Infinite, ct);
        }
        catch (OperationCanceledException)
        {
            // Stopped by SIGTERM or Ctrl+C.
        }
        return 0;
    }
}

/// <summary>Hangfire's job of <c>xdrain</c>: one <c>INCR</c> on the instrument Redis (Hangfire needs a public method).</summary>
public static class HangfireIncr
{
    internal static IDatabase? Database { get; set; }

    internal static RedisKey Counter { get; set; }

    /// <summary>The counterpart of <c>bench.incr</c>.</summary>
    public static void Incr() => Database!.StringIncrement(Counter);
}

/// <summary>The hidden <c>__drain-worker</c> command: a Conveyor worker process for <c>xdrain</c> (defaults, <c>--workers</c>
/// handlers, <c>bench.incr</c> registered); it runs until it is killed.</summary>
internal static class DrainWorker
{
    public const string Command = "__drain-worker";

    private static async Task<IDatabase> GetDatabaseAsync(Task<ConnectionMultiplexer> connecting) => (await connecting).GetDatabase();

    /// <summary>Disposes the instrument's connection once it is open.</summary>
    private sealed class DisposeLater(Task<ConnectionMultiplexer> connecting) : IAsyncDisposable
    {
        public async ValueTask DisposeAsync() => await (await connecting).DisposeAsync();
    }

    public static async Task<int> RunAsync(SharedStore store, int workers, string instrument, string counter, CancellationToken ct)
    {
        // The instrument is not part of the worker: its connection (StackExchange.Redis's first connect costs as much as
        // a Conveyor host's start, most of it JIT) is opened beside the host's start, not before it, as the Node peers'
        // ioredis client connects in the background while their worker starts. The first task awaits it.
        // On the thread pool: ConnectAsync does much of its work before its first await.
        var connecting = Task.Run(() => ConnectionMultiplexer.ConnectAsync(Conveyor.Redis.RedisUrl.Parse(instrument)), ct);
        IncrTask.Database = GetDatabaseAsync(connecting);
        IncrTask.Counter = counter;
        await using var redis = new DisposeLater(connecting);
        await using (await ConveyorInstance.StartAsync(store.Use, runWorker: true, workers, recorder: null, ct,
            addTasks: b => b.AddTask<IncrTask>(IncrTask.Name)))
        {
            Console.WriteLine("ready");
            try
            {
                await Task.Delay(Timeout.Infinite, ct);
            }
            catch (OperationCanceledException)
            {
                // Stopped by SIGTERM or Ctrl+C.
            }
        }
        return 0;
    }
}
