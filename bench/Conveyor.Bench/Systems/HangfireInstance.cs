using Conveyor.Bench.Infrastructure;
using Hangfire;
using Hangfire.Common;
using Hangfire.States;

namespace Conveyor.Bench.Systems;

/// <summary>The job methods Hangfire runs. Hangfire needs public static (or instance) methods.</summary>
public static class HangfireJobs
{
    private static long _performed;

    /// <summary>Recorder of <see cref="Probe"/>; set by the latency workload.</summary>
    internal static LatencyRecorder? Recorder { get; set; }

    /// <summary>Times <see cref="Noop"/> ran since the last reset.</summary>
    public static long Performed => Interlocked.Read(ref _performed);

    public static void ResetCounter() => Interlocked.Exchange(ref _performed, 0);

    /// <summary>The counterpart of <c>conveyor.noop</c>: does nothing but count itself.</summary>
    public static void Noop() => Interlocked.Increment(ref _performed);

    /// <summary>The counterpart of <c>bench.probe</c>.</summary>
    public static void Probe(long sentTimestamp, bool measured) => Recorder?.Record(sentTimestamp, measured);
}

/// <summary>
/// Hangfire 1.8 on Hangfire.InMemory (or Hangfire.PostgreSql, Hangfire.Redis.StackExchange), configured as its documentation recommends for new
/// applications (compatibility level 1.8, simple assembly names, recommended serializer settings).
/// Each instance has its own storage; the server runs only while <see cref="StartServer"/> holds it.
/// </summary>
internal sealed class HangfireInstance : IDisposable
{
    private static readonly Lock ConfigureLock = new();
    private static bool _configured;
    private readonly Func<ValueTask> _cleanup;
    private readonly bool _onServer;
    private BackgroundJobServer? _server;

    /// <summary>On Hangfire.InMemory.</summary>
    public HangfireInstance()
        : this(BenchBackend.Sqlite, null)
    {
    }

    /// <summary>On the storage that matches <paramref name="backend"/> (fresh schema or key prefix; InMemory for SQLite).</summary>
    public HangfireInstance(BenchBackend backend, BenchSettings? settings)
    {
        ConfigureOnce();
        _onServer = StoreTarget.IsServer(backend);
        (Storage, _cleanup) = StoreTarget.OpenHangfire(backend, settings!);
        Client = new BackgroundJobClient(Storage);
    }

    public JobStorage Storage { get; }

    public IBackgroundJobClient Client { get; }

    /// <summary>The job <see cref="HangfireJobs.Noop"/>, built once: the fastest enqueue path, which skips expression parsing.</summary>
    public static Job NoopJob { get; } = Job.FromExpression(() => HangfireJobs.Noop());

    /// <summary>Creates a queued job from a pre-built <see cref="Job"/>.</summary>
    public void EnqueuePrebuilt(Job job) => Client.Create(job, new EnqueuedState());

    /// <summary>Starts a processing server with <paramref name="workers"/> worker threads on the default queue.</summary>
    public void StartServer(int workers)
    {
        _server = new BackgroundJobServer(new BackgroundJobServerOptions
        {
            WorkerCount = workers,
            ShutdownTimeout = TimeSpan.FromSeconds(5),
            StopTimeout = TimeSpan.FromSeconds(5),
        }, Storage);
    }

    public long EnqueuedCount() => Storage.GetMonitoringApi().EnqueuedCount(EnqueuedState.DefaultQueue);

    /// <summary>Jobs the storage records as succeeded. InMemory: its succeeded list. On a server, the statistics counter:
    /// Hangfire.Redis.StackExchange trims its succeeded list (to 499 entries by default), so the list cannot count a drain.</summary>
    public long SucceededCount() => _onServer
        ? Storage.GetMonitoringApi().GetStatistics().Succeeded
        : Storage.GetMonitoringApi().SucceededListCount();

    public void Dispose()
    {
        if (_server is not null)
        {
            _server.SendStop();
            _server.Dispose();
        }
        _cleanup().AsTask().GetAwaiter().GetResult();
    }

    private static void ConfigureOnce()
    {
        lock (ConfigureLock)
        {
            if (_configured)
            {
                return;
            }
            GlobalConfiguration.Configuration
                .SetDataCompatibilityLevel(CompatibilityLevel.Version_180)
                .UseSimpleAssemblyNameTypeSerializer()
                .UseRecommendedSerializerSettings();
            _configured = true;
        }
    }
}
