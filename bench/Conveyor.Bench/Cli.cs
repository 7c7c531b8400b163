using System.CommandLine;
using System.Globalization;
using Conveyor.Bench.Results;
using Conveyor.Bench.Systems;
using Conveyor.Bench.Workloads;
using Conveyor.Sqlite;

namespace Conveyor.Bench;

/// <summary>The command line: options, their defaults and their validation.</summary>
internal static class Cli
{
    private static readonly string[] WorkloadNames = ["all", .. BenchRunner.AllWorkloads.Select(w => w.Name)];
    private static readonly string[] SystemNames = ["all", "peers", .. Enum.GetValues<BenchSystem>().Select(s => s.ToString().ToLowerInvariant())];

    public static RootCommand Build()
    {
        var workload = new Option<string[]>("--workload", "-w")
        {
            Description = "Workloads to run: all, enqueue, drain, latency, http, rss, xlatency, events, workflow, list. Repeat the option or separate with commas.",
            DefaultValueFactory = _ => ["all"],
            AllowMultipleArgumentsPerToken = true,
        };
        var system = new Option<string[]>("--system")
        {
            Description = "Systems to measure: all (conveyor and hangfire), conveyor, hangfire, and the peers of bench/peers, each on its engine's --backend: " +
                "graphile (postgres), bullmq and sidekiq (redis), masstransit and celery (rabbitmq), or peers for all five. Repeat the option or separate with commas. " +
                "Peers run in the enqueue, xdrain and xlatency workloads; install their runtimes once with bench/peers/install.sh.",
            DefaultValueFactory = _ => ["all"],
            AllowMultipleArgumentsPerToken = true,
        };
        system.Validators.Add(result =>
        {
            foreach (var name in Split(result.GetValueOrDefault<string[]>() ?? []))
            {
                if (!SystemNames.Contains(name))
                {
                    result.AddError($"Unknown system '{name}'; expected one of {string.Join(", ", SystemNames)}.");
                }
            }
        });
        var synchronous = new Option<string>("--synchronous")
        {
            Description = "SQLite synchronous settings to measure Conveyor with: normal, full or both.",
            DefaultValueFactory = _ => "both",
        };
        synchronous.AcceptOnlyFromAmong("both", "normal", "full");
        var backend = new Option<string[]>("--backend")
        {
            Description = "Backends to measure, each with Hangfire on the matching storage: sqlite (Hangfire.InMemory), postgres (Hangfire.PostgreSql), " +
                "redis (Hangfire.Redis.StackExchange), rabbitmq (RabbitMQ with a SQLite store; Hangfire has no RabbitMQ storage) or all. Repeat the option or separate with commas. On postgres and redis only enqueue, drain and latency run.",
            DefaultValueFactory = _ => ["sqlite"],
            AllowMultipleArgumentsPerToken = true,
        };
        backend.Validators.Add(result =>
        {
            foreach (var name in Split(result.GetValueOrDefault<string[]>() ?? []))
            {
                if (name is not ("all" or "sqlite" or "postgres" or "redis" or "rabbitmq"))
                {
                    result.AddError($"Unknown backend '{name}'; expected one of all, sqlite, postgres, redis, rabbitmq.");
                }
            }
        });
        var postgresUrl = new Option<string?>("--postgres-url")
        {
            Description = "postgresql://user:password@host:port/database of the server for --backend postgres (both systems, a fresh schema each run). " +
                "Default: $CONVEYOR_TEST_POSTGRES (scripts/services/postgres.sh start).",
            DefaultValueFactory = _ => Environment.GetEnvironmentVariable("CONVEYOR_TEST_POSTGRES"),
        };
        var redisUrl = new Option<string?>("--redis-url")
        {
            Description = "redis://[:password@]host:port of the server for --backend redis (both systems, a fresh key prefix each run). " +
                "Default: $CONVEYOR_TEST_REDIS (scripts/services/redis.sh start).",
            DefaultValueFactory = _ => Environment.GetEnvironmentVariable("CONVEYOR_TEST_REDIS"),
        };
        var amqpUrl = new Option<string?>("--amqp-url")
        {
            Description = "amqp://user:password@host:port/ of the broker for --backend rabbitmq (fresh queues each run). " +
                "Default: $CONVEYOR_TEST_AMQP (scripts/services/rabbitmq.sh).",
            DefaultValueFactory = _ => Environment.GetEnvironmentVariable("CONVEYOR_TEST_AMQP"),
        };
        var runs = Positive(new Option<int>("--runs") { Description = "Measured runs of each case; the report gives the median and min–max.", DefaultValueFactory = _ => 3 });
        var tasks = Positive(new Option<int>("--tasks", "-n")
        {
            Description = "Tasks per enqueue run (one at a time, concurrent, batched, HTTP) and per drain run.",
            DefaultValueFactory = _ => 100_000,
        });
        var batchSize = Positive(new Option<int>("--batch-size") { Description = "Tasks per EnqueueManyAsync call (batched enqueue; drain's untimed fill).", DefaultValueFactory = _ => 1_000 });
        var concurrency = Positive(new Option<int>("--concurrency", "-c")
        {
            Description = "Concurrent callers for the concurrent enqueue and Hangfire's batched path; concurrent keep-alive connections for HTTP.",
            DefaultValueFactory = _ => 16,
        });
        var workers = Positive(new Option<int>("--workers") { Description = "Handlers at once in the worker (Conveyor Concurrency, Hangfire WorkerCount), same for both.", DefaultValueFactory = _ => 16 });
        var prefetch = new Option<int?>("--prefetch")
        {
            Description = "Conveyor's worker prefetch (leases held at once, the largest fetch). Default: Conveyor's own default, automatic (up to 16 × workers, at least 256); " +
                "set it only to explore, and say so with the figures.",
        };
        prefetch.Validators.Add(result =>
        {
            if (result.GetValueOrDefault<int?>() is <= 0)
            {
                result.AddError("--prefetch must be greater than zero.");
            }
        });
        var rate = new Option<double?>("--rate")
        {
            Description = "Tasks per second sent by the latency workloads. Default: 500 (latency, http), 200 (xlatency), 1,000 (events).",
        };
        rate.Validators.Add(result =>
        {
            if (result.GetValueOrDefault<double?>() is <= 0)
            {
                result.AddError("--rate must be greater than zero.");
            }
        });
        var rateLimit = new Option<string?>("--rate-limit")
        {
            Description = "A rate limit on the drain's no-op task, such as 1000000/s: set far above the achievable rate, the drain shows what a limit that " +
                "does not bind costs (docs/limits.md). Default none.",
        };
        rateLimit.Validators.Add(result =>
        {
            if (result.GetValueOrDefault<string?>() is { } text && !RateLimit.TryParse(text, out _))
            {
                result.AddError($"--rate-limit '{text}': use {RateLimit.AcceptedForms}.");
            }
        });
        var concurrencyLimit = new Option<int?>("--concurrency-limit")
        {
            Description = "A concurrency limit on the drain's no-op task across the worker (slots taken and freed per task). Default none.",
        };
        concurrencyLimit.Validators.Add(result =>
        {
            if (result.GetValueOrDefault<int?>() is <= 0)
            {
                result.AddError("--concurrency-limit must be greater than zero.");
            }
        });
        var duration = Positive(new Option<double>("--duration") { Description = "Seconds of paced sending measured by the latency workloads (after 1 s of unrecorded warm-up).", DefaultValueFactory = _ => 10 });
        var timeLimit = Positive(new Option<double>("--time-limit")
        {
            Description = "Seconds after which an enqueue run stops even if --tasks were not all sent (one at a time with synchronous=FULL is slow); the rate is then what was stored in that time.",
            DefaultValueFactory = _ => 30,
        });
        var idle = Positive(new Option<double>("--idle") { Description = "Seconds an idle worker process runs before its RSS is read.", DefaultValueFactory = _ => 5 });
        var analyze = new Option<bool>("--analyze")
        {
            Description = "Drain: after the untimed fill, update the engine's statistics of the tasks table (PostgreSQL ANALYZE, SQLite ANALYZE), " +
                "as autovacuum has done to any table of a running deployment. Default: a fresh table without statistics.",
        };
        var drainSizes = new Option<string?>("--drain-sizes")
        {
            Description = "xdrain: the numbers of queued tasks to drain, comma-separated, each a run of its own (such as 20000,100000). Default: --tasks.",
        };
        drainSizes.Validators.Add(result =>
        {
            if (result.GetValueOrDefault<string?>() is { } text && ParseSizes(text) is null)
            {
                result.AddError($"--drain-sizes '{text}': give positive whole numbers separated by commas, such as 20000,100000.");
            }
        });
        var finished = new Option<long>("--finished")
        {
            Description = "xdrain on SQLite and PostgreSQL: succeeded tasks stored before the queued ones (untimed, one SQL " +
                "statement), as the results a deployment keeps, such as 10000000. Default 0.",
        };
        finished.Validators.Add(result =>
        {
            if (result.GetValueOrDefault<long>() < 0)
            {
                result.AddError("--finished must be zero or more.");
            }
        });
        var noWarmup = new Option<bool>("--no-warmup") { Description = "Skip the untimed warm-up run that precedes each case's runs." };
        var server = new Option<string?>("--server")
        {
            Description = "Path of the conveyor executable, or of Conveyor.Server.dll to run with `dotnet <dll>` (src/Conveyor.Server, Release build); " +
                "enables the http workload and the `conveyor worker` RSS figure.",
        };
        var serverCommand = new Option<string>("--server-command") { Description = "Arguments that start the HTTP server.", DefaultValueFactory = _ => "server" };
        var workerCommand = new Option<string>("--worker-command") { Description = "Arguments that start a worker process.", DefaultValueFactory = _ => "worker" };
        var json = new Option<string?>("--json") { Description = "Also write machine-readable results to this file." };

        var root = new RootCommand("""
            Conveyor's throughput and latency harness, with Hangfire 1.8 measured in the same run (Hangfire.InMemory against SQLite; Hangfire.PostgreSql, Hangfire.Redis.StackExchange on the same servers),
            and with --system peers the strongest peer on each engine (Graphile Worker, BullMQ, Sidekiq, MassTransit, Celery; install them once with bench/peers/install.sh).
            Build and run in Release: dotnet run -c Release --project bench/Conveyor.Bench -- [options].
            Writes a markdown report to stdout and progress to stderr. See docs/benchmarks.md.
            """)
        {
            workload, system, backend, postgresUrl, redisUrl, amqpUrl, synchronous, runs, tasks, batchSize, concurrency, workers, prefetch, rate, rateLimit,
            concurrencyLimit, duration, timeLimit, idle, noWarmup, analyze, drainSizes, finished,
            server, serverCommand, workerCommand, json,
        };
        workload.Validators.Add(result =>
        {
            foreach (var name in Split(result.GetValueOrDefault<string[]>() ?? []))
            {
                if (!WorkloadNames.Contains(name))
                {
                    result.AddError($"Unknown workload '{name}'; expected one of {string.Join(", ", WorkloadNames)}.");
                }
            }
        });

        root.SetAction(async (parse, ct) =>
        {
            var settings = new BenchSettings
            {
                Workloads = Split(parse.GetValue(workload) ?? ["all"]).ToHashSet(StringComparer.Ordinal),
                Systems = Split(parse.GetValue(system) ?? ["all"]).ToHashSet(StringComparer.Ordinal),
                Synchronous = parse.GetValue(synchronous) switch
                {
                    "normal" => [SqliteSynchronous.Normal],
                    "full" => [SqliteSynchronous.Full],
                    _ => [SqliteSynchronous.Normal, SqliteSynchronous.Full],
                },
                Backends = ParseBackends(parse.GetValue(backend) ?? ["sqlite"]),
                PostgresUrl = parse.GetValue(postgresUrl) is { Length: > 0 } pg ? pg : null,
                RedisUrl = parse.GetValue(redisUrl) is { Length: > 0 } redis ? redis : null,
                AmqpUrl = parse.GetValue(amqpUrl) is { Length: > 0 } amqp ? amqp : null,
                Runs = parse.GetValue(runs),
                Tasks = parse.GetValue(tasks),
                BatchSize = parse.GetValue(batchSize),
                Concurrency = parse.GetValue(concurrency),
                Workers = parse.GetValue(workers),
                Prefetch = parse.GetValue(prefetch),
                Rate = parse.GetValue(rate) ?? 500,
                RateGiven = parse.GetValue(rate) is not null,
                RateLimit = parse.GetValue(rateLimit),
                ConcurrencyLimit = parse.GetValue(concurrencyLimit),
                Duration = TimeSpan.FromSeconds(parse.GetValue(duration)),
                TimeLimit = TimeSpan.FromSeconds(parse.GetValue(timeLimit)),
                Idle = TimeSpan.FromSeconds(parse.GetValue(idle)),
                Warmup = !parse.GetValue(noWarmup),
                Analyze = parse.GetValue(analyze),
                Finished = parse.GetValue(finished),
                DrainSizes = parse.GetValue(drainSizes) is { } sizes ? ParseSizes(sizes) : null,
                Server = parse.GetValue(server) is { Length: > 0 } program ? Path.GetFullPath(program) : null,
                ServerCommand = parse.GetValue(serverCommand)!,
                WorkerCommand = parse.GetValue(workerCommand)!,
                JsonPath = parse.GetValue(json),
            };
            if (Environment.GetEnvironmentVariable("BENCH_TELEMETRY_AB") == "1" && !TelemetryCost.AddsAnything(TelemetryCost.Configured))
            {
                await Console.Error.WriteLineAsync("BENCH_TELEMETRY_AB=1 alternates the drain's runs without and with BENCH_TELEMETRY's telemetry, " +
                    $"which is {(TelemetryCost.Configured is { } given ? $"'{given}'" : "not set")}: set it to metrics, traces, 1 or all.");
                return 2;
            }
            foreach (var missing in settings.Backends.Where(b => b != BenchBackend.Sqlite))
            {
                try
                {
                    StoreTarget.Url(missing, settings);
                }
                catch (InvalidOperationException ex)
                {
                    await Console.Error.WriteLineAsync(ex.Message);
                    return 2;
                }
            }
            if (settings.AnyPeer)
            {
                if (settings.RedisUrl is null)
                {
                    await Console.Error.WriteLineAsync("The peers' no-op task does one INCR on Redis, the common instrument: pass --redis-url or set CONVEYOR_TEST_REDIS " +
                        "(export CONVEYOR_TEST_REDIS=$(bash scripts/services/redis.sh start)).");
                    return 2;
                }
                var problems = Peer.All.Where(p => settings.Includes(p.System) && settings.Backends.Contains(p.Backend))
                    .Select(p => p.RuntimeProblem()).OfType<string>().ToList();
                if (problems.Count > 0)
                {
                    foreach (var problem in problems)
                    {
                        await Console.Error.WriteLineAsync(problem);
                    }
                    return 2;
                }
            }
            var report = await new BenchRunner(settings).RunAsync(ct);
            Console.Out.Write(Report.Markdown(report));
            if (settings.JsonPath is { } path)
            {
                await Report.WriteJsonAsync(report, path, ct);
                BenchRunner.Log($"wrote {path}");
            }
            return report.Sections.Any(x => x.Skipped.Any(k => k.Reason.StartsWith("failed", StringComparison.Ordinal))) ? 1 : 0;
        });

        root.Add(IdleHostCommand());
        root.Add(ProbeWorkerCommand());
        root.Add(DrainWorkerCommand());
        root.Add(MassTransitCommand());
        root.Add(HangfireDrainWorkerCommand());
        return root;
    }

    private static Command IdleHostCommand()
    {
        var which = new Argument<string>("system") { Description = "conveyor or hangfire" };
        var db = new Option<string>("--db") { Description = "SQLite file (Conveyor)", Required = true };
        var workers = Positive(new Option<int>("--workers") { DefaultValueFactory = _ => 16 });
        var command = new Command(IdleHost.Command, "Internal: a minimal idle worker process, for the rss workload.") { which, db, workers };
        command.Hidden = true;
        command.SetAction((parse, ct) => IdleHost.RunAsync(parse.GetValue(which)!, parse.GetValue(db)!, parse.GetValue(workers), ct));
        return command;
    }

    private static Command ProbeWorkerCommand()
    {
        var backend = new Option<string>("--backend") { Required = true };
        var location = new Option<string>("--location") { Required = true };
        var name = new Option<string>("--name") { DefaultValueFactory = _ => "" };
        var synchronous = new Option<string>("--synchronous") { DefaultValueFactory = _ => "Normal" };
        var workers = Positive(new Option<int>("--workers") { DefaultValueFactory = _ => 16 });
        var expect = Positive(new Option<int>("--expect") { Required = true });
        var output = new Option<string>("--out") { Required = true };
        var command = new Command(ProbeWorker.Command, "Internal: the worker process of the xlatency workload.")
        {
            backend, location, name, synchronous, workers, expect, output,
        };
        command.Hidden = true;
        command.SetAction((parse, ct) => ProbeWorker.RunAsync(
            SharedStore.Parse(parse.GetValue(backend)!, parse.GetValue(location)!, parse.GetValue(name)!, parse.GetValue(synchronous)!),
            parse.GetValue(workers), parse.GetValue(expect), parse.GetValue(output)!, ct));
        return command;
    }

    private static Command DrainWorkerCommand()
    {
        var backend = new Option<string>("--backend") { Required = true };
        var location = new Option<string>("--location") { Required = true };
        var name = new Option<string>("--name") { DefaultValueFactory = _ => "" };
        var synchronous = new Option<string>("--synchronous") { DefaultValueFactory = _ => "Normal" };
        var workers = Positive(new Option<int>("--workers") { DefaultValueFactory = _ => 16 });
        var instrument = new Option<string>("--instrument") { Required = true };
        var counter = new Option<string>("--counter") { Required = true };
        var command = new Command(DrainWorker.Command, "Internal: the worker process of the xdrain workload.")
        {
            backend, location, name, synchronous, workers, instrument, counter,
        };
        command.Hidden = true;
        command.SetAction((parse, ct) => DrainWorker.RunAsync(
            SharedStore.Parse(parse.GetValue(backend)!, parse.GetValue(location)!, parse.GetValue(name)!, parse.GetValue(synchronous)!),
            parse.GetValue(workers), parse.GetValue(instrument)!, parse.GetValue(counter)!, ct));
        return command;
    }

    private static Command MassTransitCommand()
    {
        var which = new Argument<string>("command") { Description = "enqueue, fill, latency or worker" };
        var arguments = new Argument<string[]>("arguments") { Arity = ArgumentArity.ZeroOrMore };
        var command = new Command(MassTransitPeer.Command, "Internal: MassTransit as a peer (bench/peers/README.md).") { which, arguments };
        command.Hidden = true;
        command.SetAction((parse, ct) => MassTransitPeer.RunAsync(parse.GetValue(which)!, parse.GetValue(arguments) ?? [], ct));
        return command;
    }

    private static List<int>? ParseSizes(string text)
    {
        var sizes = new List<int>();
        foreach (var part in text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            if (!int.TryParse(part.Replace("_", "", StringComparison.Ordinal), NumberStyles.None, CultureInfo.InvariantCulture, out var size) || size <= 0)
            {
                return null;
            }
            sizes.Add(size);
        }
        return sizes.Count == 0 ? null : sizes;
    }

    private static Command HangfireDrainWorkerCommand()
    {
        var tasks = Positive(new Option<int>("--tasks") { Required = true });
        var workers = Positive(new Option<int>("--workers") { DefaultValueFactory = _ => 16 });
        var instrument = new Option<string>("--instrument") { Required = true };
        var counter = new Option<string>("--counter") { Required = true };
        var go = new Option<string>("--go") { Required = true };
        var command = new Command(HangfireDrainWorker.Command, "Internal: Hangfire.InMemory's worker process of the xdrain workload.")
        {
            tasks, workers, instrument, counter, go,
        };
        command.Hidden = true;
        command.SetAction((parse, ct) => HangfireDrainWorker.RunAsync(parse.GetValue(tasks), parse.GetValue(workers), parse.GetValue(instrument)!,
            parse.GetValue(counter)!, parse.GetValue(go)!, ct));
        return command;
    }

    private static List<BenchBackend> ParseBackends(IEnumerable<string> values)
    {
        var names = Split(values).ToList();
        BenchBackend[] order = [BenchBackend.Sqlite, BenchBackend.Postgres, BenchBackend.Redis, BenchBackend.RabbitMq];
        return names.Contains("all")
            ? [.. order]
            : [.. order.Where(b => names.Contains(b.ToString().ToLowerInvariant()))];
    }

    private static IEnumerable<string> Split(IEnumerable<string> values) =>
        values.SelectMany(v => v.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
            .Select(v => v.ToLowerInvariant());

    private static Option<T> Positive<T>(Option<T> option) where T : struct, IComparable<T>
    {
        option.Validators.Add(result =>
        {
            if (result.GetValueOrDefault<T>().CompareTo(default) <= 0)
            {
                result.AddError(string.Create(CultureInfo.InvariantCulture, $"{option.Name} must be greater than zero."));
            }
        });
        return option;
    }
}
