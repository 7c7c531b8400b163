using System.Globalization;
using Conveyor.Backends;
using Conveyor.Bench.Infrastructure;
using Conveyor.Sqlite;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Conveyor.Bench.Systems;

/// <summary>Arguments of <c>bench.probe</c>.</summary>
/// <param name="T">Stopwatch timestamp taken just before the enqueue call.</param>
/// <param name="M">Whether the sample counts (false during warm-up).</param>
public sealed record ProbeArgs(long T, bool M);

/// <summary><c>bench.probe</c>: records the time from its enqueue to the start of its handler.</summary>
internal sealed class ProbeTask(LatencyRecorder recorder) : ITaskHandler<ProbeArgs>
{
    public const string Name = "bench.probe";

    public Task HandleAsync(ProbeArgs args, TaskContext context, CancellationToken cancellationToken)
    {
        recorder.Record(args.T, args.M);
        return Task.CompletedTask;
    }
}

/// <summary>
/// An in-process Conveyor host, as an application would build it:
/// <c>AddConveyor(…).AddNoopTask().UseSqlite(…)</c> (or <c>UsePostgres</c>, <c>UseRedis</c>) on a generic host.
/// </summary>
internal sealed class ConveyorInstance : IAsyncDisposable
{
    private readonly IHost _host;
    // BENCH_TELEMETRY with traces: how many spans were exported is logged at the end of each host.
    private readonly bool _traced = TelemetryCost.Traced;

    private ConveyorInstance(IHost host)
    {
        _host = host;
        Client = host.Services.GetRequiredService<ITaskClient>();
        Status = host.Services.GetRequiredService<WorkerStatus>();
        Backend = host.Services.GetRequiredService<IConveyorBackend>();
        Store = Backend.Store;
        Workflows = host.Services.GetRequiredService<Conveyor.Workflows.IWorkflowClient>();
    }

    /// <summary>The backend, for the workflow store's cheap reads.</summary>
    public IConveyorBackend Backend { get; }

    /// <summary>Starts workflows (the workflow workload).</summary>
    public Conveyor.Workflows.IWorkflowClient Workflows { get; }

    public ITaskClient Client { get; }

    /// <summary>The worker's in-process counters.</summary>
    public WorkerStatus Status { get; }

    private static readonly Lazy<Conveyor.Encryption.PayloadKeyRing> BenchKeys = new(() => new([
        new Conveyor.Encryption.PayloadKey("bench", System.Security.Cryptography.RandomNumberGenerator.GetBytes(Conveyor.Encryption.PayloadKey.KeyBytes))]));

    /// <summary>The arguments of the drain's tasks: with <c>BENCH_ARGS=1</c> a JSON object of about 100 bytes (what an
    /// encryption A/B needs to encrypt), else none.</summary>
    public static string? TaskArgs { get; } = Environment.GetEnvironmentVariable("BENCH_ARGS") == "1"
        ? """{"tenant":"acme-industries","document":"0196a1b2-7c3d-7e4f-8a5b-6c7d8e9f0a1b","token":"sk-live-4f3e2d1c0b9a"}"""
        : null;

    /// <summary>The store role, for counts that come from the database itself.</summary>
    public ITaskStore Store { get; }

    /// <param name="databasePath">SQLite file.</param>
    /// <param name="synchronous">SQLite <c>synchronous</c> setting.</param>
    /// <param name="runWorker">Whether to run a worker (and the scheduler) in this host.</param>
    /// <param name="workers">Worker concurrency (handlers at once).</param>
    /// <param name="recorder">When given, <c>bench.probe</c> is registered and records into it.</param>
    /// <param name="cancellationToken">Cancels the start.</param>
    /// <param name="prefetch">Worker prefetch, or null for Conveyor's default.</param>
    public static Task<ConveyorInstance> StartAsync(string databasePath, SqliteSynchronous synchronous, bool runWorker, int workers,
        LatencyRecorder? recorder, CancellationToken cancellationToken, int? prefetch = null) =>
        StartAsync(b => b.UseSqlite(o =>
        {
            o.Path = databasePath;
            o.Synchronous = synchronous;
        }), runWorker, workers, recorder, cancellationToken, prefetch);

    /// <param name="useBackend">Registers the backend (<c>UseSqlite</c>, <c>UsePostgres</c>, <c>UseRedis</c>).</param>
    /// <param name="runWorker">Whether to run a worker (and the scheduler) in this host.</param>
    /// <param name="workers">Worker concurrency (handlers at once).</param>
    /// <param name="recorder">When given, <c>bench.probe</c> is registered and records into it.</param>
    /// <param name="cancellationToken">Cancels the start.</param>
    /// <param name="prefetch">Worker prefetch, or null for Conveyor's default.</param>
    /// <param name="limits">Rate and concurrency limits (<see cref="ConveyorOptions.Limits"/>), or none.</param>
    public static async Task<ConveyorInstance> StartAsync(Action<ConveyorBuilder> useBackend, bool runWorker, int workers,
        LatencyRecorder? recorder, CancellationToken cancellationToken, int? prefetch = null, IReadOnlyList<LimitRule>? limits = null,
        Action<ConveyorBuilder>? addTasks = null)
    {
        var builder = Host.CreateEmptyApplicationBuilder(new HostApplicationBuilderSettings());
        // Conveyor's own categories at Information, as a server logs by default: the logging middleware runs (and checks
        // its Debug level) on every attempt, as it does in production.
        builder.Logging.AddConsole(o => o.LogToStandardErrorThreshold = LogLevel.Trace).SetMinimumLevel(LogLevel.Warning)
            .AddFilter("Conveyor", LogLevel.Information);
        var conveyor = builder.Services
            .AddConveyor(o =>
            {
                o.RunWorker = runWorker;
                o.RunScheduler = runWorker;
                o.Worker.Concurrency = workers;
                o.Worker.Prefetch = prefetch;
                // BENCH_PREFETCH and BENCH_FETCH_CONCURRENCY: the worker's fetch settings for an experiment (docs/benchmarks.md).
                if (int.TryParse(Environment.GetEnvironmentVariable("BENCH_PREFETCH"), CultureInfo.InvariantCulture, out var fixedPrefetch))
                {
                    o.Worker.Prefetch = fixedPrefetch;
                }
                if (int.TryParse(Environment.GetEnvironmentVariable("BENCH_FETCH_CONCURRENCY"), CultureInfo.InvariantCulture, out var fetchConcurrency))
                {
                    o.Worker.FetchConcurrency = fetchConcurrency;
                }
                // BENCH_LOG_TASKS=0 leaves the logging middleware out: the A/B of its cost (docs/benchmarks.md).
                o.LogTasks = Environment.GetEnvironmentVariable("BENCH_LOG_TASKS") != "0";
                // CONVEYOR_PROPAGATE_UNSAMPLED_TRACES=false, as on a server: only sampled traces' context in the messages.
                o.PropagateUnsampledTraces = !string.Equals(Environment.GetEnvironmentVariable("CONVEYOR_PROPAGATE_UNSAMPLED_TRACES"), "false", StringComparison.OrdinalIgnoreCase);
                // The workflow workload's chord is 10,000 members and its callback: one over the default cap.
                o.MaxWorkflowSteps = 20_000;
                foreach (var limit in limits ?? [])
                {
                    o.Limits.Add(limit);
                }
            })
            .AddNoopTask();
        addTasks?.Invoke(conveyor);
        useBackend(conveyor);
        // BENCH_ENCRYPTION=1: payloads encrypted at rest (one key per bench process), the A/B of its cost
        // (docs/security.md#encryption-at-rest); with BENCH_ARGS=1 the drain's tasks have arguments to encrypt.
        if (Environment.GetEnvironmentVariable("BENCH_ENCRYPTION") == "1")
        {
            conveyor.UseEncryption(BenchKeys.Value);
        }
        // BENCH_TELEMETRY=1: the OpenTelemetry SDK records Conveyor's metrics and samples every span, as a server with
        // /metrics and an OTLP exporter does (the exporters discard): the A/B of their cost (docs/observability.md);
        // =metrics or =traces one of the two. OTEL_TRACES_SAMPLER (and _ARG) choose the sampler, as on a server.
        TelemetryCost.Add(builder, TelemetryCost.Mode);
        if (recorder is not null)
        {
            builder.Services.AddSingleton(recorder);
            conveyor.AddTask<ProbeTask>(ProbeTask.Name);
        }
        var host = builder.Build();
        try
        {
            await host.StartAsync(cancellationToken);
        }
        catch
        {
            host.Dispose();
            throw;
        }
        return new ConveyorInstance(host);
    }

    /// <summary>Tasks in <paramref name="state"/> in the default queue, counted by the store exactly (the finished states
    /// too, which the store's default counts no further than its limit: one grouping over the table, as before it).</summary>
    public async Task<long> CountAsync(TaskState state, CancellationToken cancellationToken)
    {
        var queues = await Store.GetQueuesAsync(int.MaxValue, cancellationToken);
        return queues.Where(q => q.Name == QueueNames.Default).Sum(q => q.Count(state));
    }

    public async ValueTask DisposeAsync()
    {
        try
        {
            await _host.StopAsync(CancellationToken.None);
        }
        finally
        {
            _host.Dispose();
        }
        if (_traced)
        {
            // The tracer provider flushed its spans when the host was disposed.
            BenchRunner.Log($"  (spans exported so far in this process: {TelemetryCost.SpansExported:N0})");
        }
    }
}
