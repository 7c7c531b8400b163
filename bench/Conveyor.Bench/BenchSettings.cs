using Conveyor.Sqlite;

namespace Conveyor.Bench;

/// <summary>Everything the command line sets; defaults are documented in <see cref="Cli"/> and docs/benchmarks.md.</summary>
internal sealed record BenchSettings
{
    public required IReadOnlySet<string> Workloads { get; init; }
    public required IReadOnlySet<string> Systems { get; init; }
    public required IReadOnlyList<SqliteSynchronous> Synchronous { get; init; }
    /// <summary>Backends whose tables are made, in this order (<c>--backend</c>); SQLite alone by default.</summary>
    public IReadOnlyList<Conveyor.Bench.Systems.BenchBackend> Backends { get; init; } = [Conveyor.Bench.Systems.BenchBackend.Sqlite];
    /// <summary><c>postgresql://</c> URL of the server for <c>--backend postgres</c>.</summary>
    public string? PostgresUrl { get; init; }
    /// <summary><c>redis://</c> URL of the server for <c>--backend redis</c>.</summary>
    public string? RedisUrl { get; init; }
    /// <summary><c>amqp://</c> URL of the broker for <c>--backend rabbitmq</c>.</summary>
    public string? AmqpUrl { get; init; }
    public int Runs { get; init; } = 3;
    public int Tasks { get; init; } = 100_000;
    public int BatchSize { get; init; } = 1_000;
    public int Concurrency { get; init; } = 16;
    public int Workers { get; init; } = 16;
    /// <summary>Conveyor's <see cref="WorkerOptions.Prefetch"/>; null keeps its default (automatic).</summary>
    public int? Prefetch { get; init; }
    public double Rate { get; init; } = 500;
    /// <summary>A rate limit (<c>--rate-limit</c>, <c>N/s</c>) on the drain's no-op task; null for none.</summary>
    public string? RateLimit { get; init; }
    /// <summary>A concurrency limit (<c>--concurrency-limit</c>) on the drain's no-op task; null for none.</summary>
    public int? ConcurrencyLimit { get; init; }

    /// <summary>The limits the drain's worker runs with (<see cref="RateLimit"/>, <see cref="ConcurrencyLimit"/>).</summary>
    public IReadOnlyList<LimitRule> Limits => RateLimit is null && ConcurrencyLimit is null
        ? []
        : [LimitRule.ForTask(NoopTask.Name, rate: RateLimit, concurrency: ConcurrencyLimit)];

    /// <summary>", rate limit 1000000/s, concurrency limit 64" for the metric names; empty without limits.</summary>
    public string LimitsSuffix => (RateLimit is null ? "" : $", rate limit {RateLimit}") + (ConcurrencyLimit is null ? "" : $", concurrency limit {ConcurrencyLimit}");
    /// <summary>Whether <c>--rate</c> was given; when not, xlatency (200/s) and events (1,000/s) use their own defaults.</summary>
    public bool RateGiven { get; init; }
    public TimeSpan Duration { get; init; } = TimeSpan.FromSeconds(10);
    public TimeSpan TimeLimit { get; init; } = TimeSpan.FromSeconds(30);
    public TimeSpan Idle { get; init; } = TimeSpan.FromSeconds(5);
    public bool Warmup { get; init; } = true;
    /// <summary>Queued tasks of each <c>xdrain</c> run (<c>--drain-sizes</c>); null for <see cref="Tasks"/> alone.</summary>
    public IReadOnlyList<int>? DrainSizes { get; init; }

    /// <summary>The sizes <c>xdrain</c> measures, in order.</summary>
    public IReadOnlyList<int> XDrainSizes => DrainSizes ?? [Tasks];
    /// <summary>Whether the drain updates the engine's statistics of the filled table before its worker starts
    /// (<c>--analyze</c>): what autovacuum has done to any table of a running deployment.</summary>
    public bool Analyze { get; init; }
    /// <summary>Succeeded tasks kept in the store before the queued ones (<c>--finished</c>, <c>xdrain</c> on SQLite and
    /// PostgreSQL): how the drain grows with the results a deployment keeps.</summary>
    public long Finished { get; init; }
    public string? Server { get; init; }
    public string ServerCommand { get; init; } = "server";
    public string WorkerCommand { get; init; } = "worker";
    public string? JsonPath { get; init; }

    /// <summary>Why the <c>conveyor</c> executable cannot be run, or null when it can.</summary>
    public string? ServerProblem() => Server switch
    {
        null => "no --server given: pass the path of the conveyor executable or Conveyor.Server.dll (src/Conveyor.Server, built with -c Release)",
        _ when !File.Exists(Server) => $"--server {Server} does not exist: build src/Conveyor.Server with -c Release first",
        _ => null,
    };

    public bool Wants(string workload) => Workloads.Contains("all") || Workloads.Contains(workload);

    /// <summary>Whether <c>--system</c> selects <paramref name="system"/>: <c>all</c> is Conveyor and Hangfire (the systems built into
    /// the harness), <c>peers</c> every peer of bench/peers, else each system by name.</summary>
    public bool Includes(Results.BenchSystem system) =>
        Systems.Contains(system.ToString().ToLowerInvariant())
        || (Systems.Contains("all") && system is Results.BenchSystem.Conveyor or Results.BenchSystem.Hangfire)
        || (Systems.Contains("peers") && Conveyor.Bench.Systems.Peer.IsPeer(system));

    /// <summary>Whether any peer of bench/peers is selected (the instrument Redis is then needed).</summary>
    public bool AnyPeer => Conveyor.Bench.Systems.Peer.All.Any(p => Includes(p.System));

    /// <summary>Settings of the untimed warm-up pass that precedes the runs of a case: small, but enough to JIT the hot paths.</summary>
    public BenchSettings ForWarmup() => this with
    {
        Tasks = Math.Min(Tasks, 5_000),
        DrainSizes = [Math.Min(XDrainSizes.Min(), 5_000)],
        Duration = TimeSpan.FromSeconds(Math.Min(Duration.TotalSeconds, 1)),
        TimeLimit = TimeSpan.FromSeconds(Math.Min(TimeLimit.TotalSeconds, 3)),
    };
}
