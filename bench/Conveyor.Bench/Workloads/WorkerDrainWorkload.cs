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
        foreach (var peer in Peer.On(backend, settings))
        {
            yield return new BenchCase(new CaseKey(Name, peer.System, peer.Variant), (s, ct) => RunPeerAsync(s, peer, ct));
        }
    }

    private static async Task<IReadOnlyList<Metric>> RunConveyorAsync(BenchSettings s, StoreTarget target, CancellationToken ct)
    {
        using var dir = new TempDirectory("xdrain");
        var store = SharedStore.Fresh(target, s, dir);
        var counter = $"bench:xdrain_{Guid.NewGuid():N}:count";
        await using var redis = await ConnectionMultiplexer.ConnectAsync(Conveyor.Redis.RedisUrl.Parse(s.RedisUrl!));
        try
        {
            await using (var producer = await ConveyorInstance.StartAsync(store.Use, runWorker: false, s.Workers, null, ct))
            {
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
                    new Dictionary<string, string>(), dir.Path),
            ], ct);
            await using (var checker = await ConveyorInstance.StartAsync(store.Use, runWorker: false, s.Workers, null, ct))
            {
                await Wait.UntilAsync(async () => await checker.CountAsync(TaskState.Succeeded, ct) >= s.Tasks, TimeSpan.FromMilliseconds(20),
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

    private static async Task<IReadOnlyList<Metric>> RunPeerAsync(BenchSettings s, Peer peer, CancellationToken ct)
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
        return await DrainClock.MeasureAsync(s.Tasks, await run.InstrumentAsync(), run.CounterKey, () => peer.StartWorkers(run), ct);
    }
}

/// <summary><c>bench.incr</c>: the no-op task of <c>xdrain</c>, one <c>INCR</c> on the instrument Redis.</summary>
internal sealed class IncrTask : ITaskHandler<NoArgs>
{
    public const string Name = "bench.incr";

    /// <summary>Set by <see cref="DrainWorker"/> before its host starts.</summary>
    internal static IDatabase? Database { get; set; }

    internal static RedisKey Counter { get; set; }

    public Task HandleAsync(NoArgs args, TaskContext context, CancellationToken cancellationToken) =>
        Database!.StringIncrementAsync(Counter);
}

/// <summary>The hidden <c>__drain-worker</c> command: a Conveyor worker process for <c>xdrain</c> (defaults, <c>--workers</c>
/// handlers, <c>bench.incr</c> registered); it runs until it is killed.</summary>
internal static class DrainWorker
{
    public const string Command = "__drain-worker";

    public static async Task<int> RunAsync(SharedStore store, int workers, string instrument, string counter, CancellationToken ct)
    {
        await using var redis = await ConnectionMultiplexer.ConnectAsync(Conveyor.Redis.RedisUrl.Parse(instrument));
        IncrTask.Database = redis.GetDatabase();
        IncrTask.Counter = counter;
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
