using System.Diagnostics;
using System.Globalization;
using Conveyor.Bench.Infrastructure;
using Conveyor.Bench.Results;
using Conveyor.Postgres;
using Conveyor.Redis;
using Npgsql;
using RabbitMQ.Client;
using StackExchange.Redis;

namespace Conveyor.Bench.Systems;

/// <summary>
/// A peer: another job system measured beside Conveyor on the engine it runs on, driven as child processes that speak the
/// line protocol of bench/peers/README.md (<c>enqueue</c>, <c>fill</c>, <c>analyze</c>, <c>latency</c>, <c>worker</c>). Each
/// peer's no-op task does one <c>INCR</c> on the instrument Redis (<c>--redis-url</c>), which is how the bench sees it run.
/// </summary>
/// <param name="System">Its value of <c>--system</c>.</param>
/// <param name="Backend">The engine whose tables it joins.</param>
/// <param name="Variant">Its column in the report: name, version and settings.</param>
/// <param name="Folder">Its folder under bench/peers, or null for one this harness runs itself (MassTransit).</param>
/// <param name="WorkerProcesses">Worker processes started for a drain or a latency run (Sidekiq: 2).</param>
internal sealed record Peer(BenchSystem System, BenchBackend Backend, string Variant, string? Folder, int WorkerProcesses = 1)
{
    /// <summary>Debian's interpreter, which has Debian's python3-celery and python3-redis (not a pyenv's or a venv's).</summary>
    private const string DebianPython = "/usr/bin/python3";

    public static IReadOnlyList<Peer> All { get; } =
    [
        new(BenchSystem.Graphile, BenchBackend.Postgres, "Graphile Worker 0.17.3 (concurrentJobs 24, localQueue 500, batched completion)", "graphile"),
        new(BenchSystem.BullMQ, BenchBackend.Redis, "BullMQ 6.7.6 (concurrency 50)", "bullmq"),
        new(BenchSystem.Sidekiq, BenchBackend.Redis, "Sidekiq 6.4.1 (2 processes × 10 threads)", "sidekiq", WorkerProcesses: 2),
        new(BenchSystem.MassTransit, BenchBackend.RabbitMq, "MassTransit 8.5.12 (prefetch 64, publisher confirms)", null),
        new(BenchSystem.Celery, BenchBackend.RabbitMq, "Celery 5.2.6 (prefork, one child per core)", "celery"),
    ];

    public static IEnumerable<Peer> On(BenchBackend backend, BenchSettings settings) =>
        All.Where(p => p.Backend == backend && settings.Includes(p.System));

    public static bool IsPeer(BenchSystem system) => All.Any(p => p.System == system);

    /// <summary>bench/peers in the checkout this harness was built from (or the current directory's).</summary>
    public static string? PeersDirectory()
    {
        foreach (var start in new[] { AppContext.BaseDirectory, Directory.GetCurrentDirectory() })
        {
            for (var dir = new DirectoryInfo(start); dir is not null; dir = dir.Parent)
            {
                var candidate = Path.Combine(dir.FullName, "bench", "peers");
                if (File.Exists(Path.Combine(candidate, "install.sh")))
                {
                    return candidate;
                }
            }
        }
        return null;
    }

    /// <summary>Why this peer cannot run here (its runtime or packages missing), or null when it can.</summary>
    public string? RuntimeProblem()
    {
        if (Folder is null)
        {
            return null;
        }
        var peers = PeersDirectory();
        if (peers is null)
        {
            return "bench/peers not found above the harness or the current directory: run the bench from the repository";
        }
        var install = $"run `bash {Path.Combine(peers, "install.sh")}` once (it installs every peer's runtime)";
        var folder = Path.Combine(peers, Folder);
        return System switch
        {
            BenchSystem.Graphile or BenchSystem.BullMQ when !OnPath("node") =>
                $"{Variant}: Node.js (`node`) is not installed; {install}",
            BenchSystem.Graphile when !Directory.Exists(Path.Combine(folder, "node_modules", "graphile-worker")) =>
                $"{Variant}: {folder}/node_modules is missing; {install}",
            BenchSystem.BullMQ when !Directory.Exists(Path.Combine(folder, "node_modules", "bullmq")) =>
                $"{Variant}: {folder}/node_modules is missing; {install}",
            BenchSystem.Sidekiq when !OnPath("ruby") || !OnPath("sidekiq") =>
                $"{Variant}: Ruby or Debian's ruby-sidekiq is not installed; {install}",
            BenchSystem.Celery when !Runs(DebianPython, "-c", "import celery, redis") =>
                $"{Variant}: Debian's python3-celery or python3-redis is not installed for {DebianPython}; {install}",
            _ => null,
        };
    }

    /// <summary>The program and arguments that run this peer's <paramref name="command"/>.</summary>
    private (string Program, List<string> Arguments, string WorkingDirectory) Command(string command, params string[] arguments)
    {
        if (Folder is null)
        {
            return (typeof(Peer).Assembly.Location, [MassTransitPeer.Command, command, .. arguments], Path.GetTempPath());
        }
        var folder = Path.Combine(PeersDirectory()!, Folder);
        return System switch
        {
            BenchSystem.Sidekiq => ("ruby", ["peer.rb", command, .. arguments], folder),
            BenchSystem.Celery => (DebianPython, ["peer.py", command, .. arguments], folder),
            _ => ("node", ["peer.js", command, .. arguments], folder),
        };
    }

    /// <summary>A fresh place for one run: a PostgreSQL schema, a Redis key prefix or Sidekiq queue, a RabbitMQ queue.</summary>
    public PeerRun Fresh(BenchSettings s)
    {
        var id = Guid.NewGuid().ToString("N")[..10];
        var name = System switch
        {
            BenchSystem.Graphile => $"bench_graphile_{id}",
            _ => $"{System.ToString().ToLowerInvariant()[..2]}{id}",
        };
        var instrument = s.RedisUrl ?? throw new InvalidOperationException(
            "the peers' instrument is a Redis INCR: pass --redis-url or set CONVEYOR_TEST_REDIS (export CONVEYOR_TEST_REDIS=$(bash scripts/services/redis.sh start))");
        return new PeerRun(this, StoreTarget.Url(Backend, s), name, instrument);
    }

    /// <summary>Runs <paramref name="command"/> to its end and returns its output lines (fails on a non-zero exit).</summary>
    public async Task<IReadOnlyList<string>> RunAsync(PeerRun run, string command, TimeSpan timeout, CancellationToken ct, params string[] arguments)
    {
        var (program, args, cwd) = Command(command, arguments);
        using var process = ChildProcess.Start(program, args, run.Environment, cwd);
        await Wait.UntilAsync(() => process.HasExited, TimeSpan.FromMilliseconds(20), timeout, $"{Variant} `{command}` to end", ct);
        if (process.ExitCode != 0)
        {
            throw new InvalidOperationException($"{Variant} `{command}` exited with {process.ExitCode}. Its last output:{Environment.NewLine}{process.Output}");
        }
        return process.Lines;
    }

    /// <summary>Starts the worker process(es); they print <c>ready</c> once they consume.</summary>
    public IReadOnlyList<ChildProcess> StartWorkers(PeerRun run)
    {
        var (program, args, cwd) = Command("worker");
        return [.. Enumerable.Range(0, WorkerProcesses).Select(_ => ChildProcess.Start(program, args, run.Environment, cwd))];
    }

    /// <summary>The number on the first output line that starts with <paramref name="key"/> and a space.</summary>
    public static double Read(IReadOnlyList<string> lines, string key, int field = 1)
    {
        var line = lines.LastOrDefault(l => l.StartsWith(key + " ", StringComparison.Ordinal))
            ?? throw new InvalidOperationException($"No `{key} …` line in the output:{Environment.NewLine}{string.Join(Environment.NewLine, lines)}");
        return double.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[field], CultureInfo.InvariantCulture);
    }

    private static bool OnPath(string program) =>
        (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':', StringSplitOptions.RemoveEmptyEntries)
            .Any(dir => File.Exists(Path.Combine(dir, program)));

    private static bool Runs(string program, params string[] arguments)
    {
        if (!File.Exists(program))
        {
            return false;
        }
        var info = new ProcessStartInfo(program) { RedirectStandardError = true, RedirectStandardOutput = true, UseShellExecute = false };
        foreach (var argument in arguments)
        {
            info.ArgumentList.Add(argument);
        }
        using var process = Process.Start(info)!;
        process.WaitForExit(30_000);
        return process.HasExited && process.ExitCode == 0;
    }
}

/// <summary>One run of a peer: its fresh namespace, the instrument's keys, and the cleanup of both.</summary>
internal sealed class PeerRun(Peer peer, string url, string name, string instrument) : IAsyncDisposable
{
    private ConnectionMultiplexer? _redis;

    public string Name => name;

    /// <summary>The key every no-op task increments.</summary>
    public string CounterKey => $"bench:{name}:count";

    /// <summary>The list every probe appends <c>"m latency_ns"</c> to.</summary>
    public string SamplesKey => $"bench:{name}:samples";

    public IReadOnlyDictionary<string, string> Environment => new Dictionary<string, string>
    {
        ["PEER_URL"] = url,
        ["PEER_NAME"] = name,
        ["PEER_REDIS"] = instrument,
        ["PEER_COUNTER"] = CounterKey,
        ["PEER_SAMPLES"] = SamplesKey,
        ["PEER_PREFETCH"] = "64",
    };

    /// <summary>The instrument Redis, connected on first use.</summary>
    public async Task<IDatabase> InstrumentAsync()
    {
        _redis ??= await ConnectionMultiplexer.ConnectAsync(RedisUrl.Parse(instrument));
        return _redis.GetDatabase();
    }

    public async ValueTask DisposeAsync()
    {
        try
        {
            switch (peer.Backend)
            {
                case BenchBackend.Postgres:
                    {
                        NpgsqlConnection.ClearAllPools();
                        await using var connection = new NpgsqlConnection(PostgresConnectionString.Normalize(url));
                        await connection.OpenAsync();
                        await using var command = new NpgsqlCommand($"DROP SCHEMA IF EXISTS \"{name}\" CASCADE", connection);
                        await command.ExecuteNonQueryAsync();
                        break;
                    }
                case BenchBackend.Redis:
                    await DeleteKeysAsync(url, $"*{name}*");
                    if (peer.System == BenchSystem.Sidekiq)
                    {
                        // Sidekiq lists every queue it has seen in its `queues` set.
                        await using var redis = await ConnectionMultiplexer.ConnectAsync(RedisUrl.Parse(url));
                        await redis.GetDatabase().SetRemoveAsync("queues", name);
                    }
                    break;
                case BenchBackend.RabbitMq:
                    {
                        var factory = new ConnectionFactory { Uri = new Uri(url) };
                        await using var connection = await factory.CreateConnectionAsync();
                        await using var channel = await connection.CreateChannelAsync();
                        await channel.QueueDeleteAsync(name);
                        await channel.ExchangeDeleteAsync(name);
                        break;
                    }
                default:
                    break;
            }
            await DeleteKeysAsync(instrument, $"bench:{name}:*");
        }
        finally
        {
            if (_redis is not null)
            {
                await _redis.DisposeAsync();
            }
        }
    }

    private static async Task DeleteKeysAsync(string redisUrl, string pattern)
    {
        await using var redis = await ConnectionMultiplexer.ConnectAsync(RedisUrl.Parse(redisUrl));
        foreach (var endpoint in redis.GetEndPoints())
        {
            var keys = new List<RedisKey>();
            await foreach (var key in redis.GetServer(endpoint).KeysAsync(pattern: pattern, pageSize: 1000))
            {
                keys.Add(key);
            }
            foreach (var chunk in keys.Chunk(1000))
            {
                await redis.GetDatabase().KeyDeleteAsync(chunk);
            }
        }
    }
}

/// <summary>The measure shared by the drain of every system in <c>xdrain</c>: the instrument's counter, polled.</summary>
internal static class DrainClock
{
    private static readonly TimeSpan Poll = TimeSpan.FromMilliseconds(5);

    /// <summary>Starts the worker process(es) with <paramref name="start"/> and times them until the counter at
    /// <paramref name="counterKey"/> reaches <paramref name="total"/>; reads their peak RSS then.</summary>
    /// <param name="suffix">Appended to each metric's name (", 20,000 queued").</param>
    /// <param name="startedBefore">Start-up the worker made before <paramref name="start"/> was called (Hangfire.InMemory's
    /// process start, before its fill), counted as if it had been made after.</param>
    public static async Task<IReadOnlyList<Metric>> MeasureAsync(int total, IDatabase redis, string counterKey,
        Func<IReadOnlyList<ChildProcess>> start, string suffix, CancellationToken ct, TimeSpan startedBefore = default)
    {
        var t0 = Stopwatch.GetTimestamp() - (long)(startedBefore.TotalSeconds * Stopwatch.Frequency);
        var workers = start();
        try
        {
            long? first = null, tenth = null, ninetieth = null;
            var deadline = t0 + (long)((TimeSpan.FromMinutes(2) + TimeSpan.FromMilliseconds(total)).TotalSeconds * Stopwatch.Frequency);
            long count;
            while (true)
            {
                count = (long?)await redis.StringGetAsync(counterKey) ?? 0;
                var now = Stopwatch.GetTimestamp();
                if (count >= 1)
                {
                    first ??= now;
                }
                if (count >= total / 10)
                {
                    tenth ??= now;
                }
                if (count >= total - (total / 10))
                {
                    ninetieth ??= now;
                }
                if (count >= total)
                {
                    break;
                }
                if (workers.FirstOrDefault(w => w.HasExited) is { } dead)
                {
                    throw new InvalidOperationException($"A worker process exited at {count:N0} of {total:N0} tasks. Its last output:{Environment.NewLine}{dead.Output}");
                }
                if (now > deadline)
                {
                    throw new TimeoutException($"The drain ran {count:N0} of {total:N0} tasks before the timeout.");
                }
                await Task.Delay(Poll, ct);
            }
            var done = Stopwatch.GetTimestamp();
            var peakKiB = workers.Sum(w => w.ReadTreePeakKiB());
            await Task.Delay(TimeSpan.FromMilliseconds(200), ct);
            var after = (long?)await redis.StringGetAsync(counterKey) ?? 0;
            if (after > total)
            {
                BenchRunner.Log($"  ({after - total:N0} tasks ran more than once: the counter reads {after:N0} for {total:N0} tasks)");
            }
            double Seconds(long from, long to) => (to - from) / (double)Stopwatch.Frequency;
            return
            [
                new Metric($"drain from worker start{suffix}", "tasks/s", true, total / Seconds(t0, done)),
                new Metric($"drain, steady (10 % to 90 % done){suffix}", "tasks/s", true, (ninetieth!.Value - tenth!.Value) <= 0
                    ? double.NaN
                    : (total - (2 * (total / 10))) / Seconds(tenth.Value, ninetieth.Value)),
                new Metric($"worker start to first task done{suffix}", "ms", false, Seconds(t0, first!.Value) * 1000),
                new Metric($"worker peak RSS (VmHWM, all its processes){suffix}", "MiB", false, peakKiB / 1024.0),
            ];
        }
        finally
        {
            foreach (var worker in workers)
            {
                worker.Dispose();
            }
        }
    }
}
