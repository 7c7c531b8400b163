using System.Diagnostics;
using System.Diagnostics.Metrics;
using Conveyor.Backends;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;

namespace Conveyor;

/// <summary>
/// Conveyor's instruments (<see cref="ConveyorMetricNames"/>) on the <c>Conveyor</c> meter. The task counters and
/// histograms are recorded from this process's task events (<see cref="TaskEventBus"/>), which are built only while some
/// listener has enabled an instrument (<see cref="Enabled"/>), so with no listener they cost nothing. The queue and worker
/// gauges read the backend, at most once per <see cref="ConveyorOptions.MetricsRefreshInterval"/> however often they
/// are collected.
/// </summary>
internal sealed partial class ConveyorMetrics : IDisposable
{
    // Seconds; from a millisecond handler to a ten-minute one (OpenTelemetry's default boundaries are for milliseconds).
    private static readonly double[] DurationBuckets = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600];
    private static readonly double[] RoundTripBuckets = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5];

    private readonly Meter _meter;
    private readonly bool _ownsMeter;
    private readonly IServiceProvider? _services;
    private readonly TimeProvider _time;
    private readonly TimeSpan _refreshInterval;
    private readonly TimeSpan _aliveWindow;
    private readonly ILogger _logger;

    private readonly Counter<long> _enqueued;
    private readonly Counter<long> _started;
    private readonly Counter<long> _succeeded;
    private readonly Counter<long> _failed;
    private readonly Counter<long> _retried;
    private readonly Counter<long> _dead;
    private readonly Counter<long> _cancelled;
    private readonly Counter<long> _expired;
    private readonly Histogram<double> _duration;
    private readonly Histogram<double> _queueWait;
    private readonly Counter<long> _leasesExpired;
    private readonly Histogram<double> _backendDuration;

    private volatile Snapshot _snapshot = Snapshot.Empty;
    private Task? _refreshing;
    private readonly Lock _refreshGate = new();

    /// <summary>Metrics on a meter of the host's <see cref="IMeterFactory"/> when it has one (so that each host's
    /// instruments are its own), else on a meter of this instance's.</summary>
    public ConveyorMetrics(IServiceProvider services, IOptions<ConveyorOptions> options, TimeProvider time)
        : this(services.GetService<IMeterFactory>(), services, options.Value, time,
            services.GetService<ILogger<ConveyorMetrics>>())
    {
    }

    internal ConveyorMetrics(IMeterFactory? meterFactory, IServiceProvider? services, ConveyorOptions options, TimeProvider time, ILogger? logger = null)
    {
        _services = services;
        _time = time;
        _refreshInterval = options.MetricsRefreshInterval;
        _aliveWindow = options.Worker.HeartbeatInterval * 2;
        _logger = logger ?? NullLogger.Instance;
        if (meterFactory is not null)
        {
            _meter = meterFactory.Create(new MeterOptions(ConveyorDiagnostics.Name) { Version = ConveyorDiagnostics.Version });
        }
        else
        {
            _meter = new Meter(ConveyorDiagnostics.Name, ConveyorDiagnostics.Version);
            _ownsMeter = true;
        }
        _enqueued = _meter.CreateCounter<long>(ConveyorMetricNames.TasksEnqueued, "{task}", "Tasks stored by enqueues and manual retries.");
        _started = _meter.CreateCounter<long>(ConveyorMetricNames.TasksStarted, "{attempt}", "Attempts whose handler started.");
        _succeeded = _meter.CreateCounter<long>(ConveyorMetricNames.TasksSucceeded, "{attempt}", "Attempts that succeeded.");
        _failed = _meter.CreateCounter<long>(ConveyorMetricNames.TasksFailed, "{attempt}", "Attempts that failed (retried or dead).");
        _retried = _meter.CreateCounter<long>(ConveyorMetricNames.TasksRetried, "{attempt}", "Failed attempts whose task runs again.");
        _dead = _meter.CreateCounter<long>(ConveyorMetricNames.TasksDead, "{task}", "Tasks that went dead.");
        _cancelled = _meter.CreateCounter<long>(ConveyorMetricNames.TasksCancelled, "{task}", "Tasks cancelled.");
        _expired = _meter.CreateCounter<long>(ConveyorMetricNames.TasksExpired, "{task}", "Tasks that expired before they started.");
        _duration = _meter.CreateHistogram(ConveyorMetricNames.TaskDuration, "s", "Run time of attempts.",
            advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = DurationBuckets });
        _queueWait = _meter.CreateHistogram(ConveyorMetricNames.TaskQueueWait, "s", "Time from ready to the handler's start.",
            advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = DurationBuckets });
        _leasesExpired = _meter.CreateCounter<long>(ConveyorMetricNames.LeasesExpired, "{lease}", "Leases that ran out and were taken back.");
        _backendDuration = _meter.CreateHistogram(ConveyorMetricNames.BackendDuration, "s", "Round trips of backend calls.",
            advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = RoundTripBuckets });
        _meter.CreateObservableGauge(ConveyorMetricNames.QueueDepth, ObserveDepth, "{task}", "Tasks per queue and state.");
        _meter.CreateObservableGauge(ConveyorMetricNames.QueueOldestAge, ObserveOldestAge, "s", "Age of the oldest ready task per queue.");
        _meter.CreateObservableGauge(ConveyorMetricNames.QueuePaused, ObservePaused, "1", "Whether each queue is paused.");
        _meter.CreateObservableGauge(ConveyorMetricNames.WorkersAlive, ObserveWorkers, "{worker}", "Workers whose heartbeat is recent.");
    }

    /// <summary>Whether a listener records the task instruments: task events are built for them only then.</summary>
    public bool Enabled => _started.Enabled || _succeeded.Enabled || _enqueued.Enabled;

    /// <summary>Whether a listener records backend round trips.</summary>
    public bool BackendEnabled => _backendDuration.Enabled;

    /// <summary>Records a task event on the counters and histograms.</summary>
    public void Record(TaskEvent taskEvent)
    {
        var tags = new TagList { { "task", taskEvent.Task }, { "queue", taskEvent.Queue } };
        switch (taskEvent.Kind)
        {
            case TaskEventKind.Enqueued:
                _enqueued.Add(1, tags);
                break;
            case TaskEventKind.Started:
                _started.Add(1, tags);
                if (taskEvent.QueueWait is { } wait)
                {
                    _queueWait.Record(Math.Max(0, wait.TotalSeconds), tags);
                }
                break;
            case TaskEventKind.Succeeded:
                _succeeded.Add(1, tags);
                RecordDuration(taskEvent, tags, "succeeded");
                break;
            case TaskEventKind.Retrying:
                // A snooze, or a task no handler here knows, goes back without an error and without spending an attempt.
                if (taskEvent.Error is not null && taskEvent.Duration is not null)
                {
                    _failed.Add(1, tags);
                    _retried.Add(1, tags);
                    RecordDuration(taskEvent, tags, "failed");
                }
                break;
            case TaskEventKind.Dead:
                _failed.Add(1, tags);
                _dead.Add(1, tags);
                RecordDuration(taskEvent, tags, "failed");
                break;
            case TaskEventKind.Cancelled:
                _cancelled.Add(1, tags);
                RecordDuration(taskEvent, tags, "cancelled");
                break;
            case TaskEventKind.Expired:
                _expired.Add(1, tags);
                break;
        }
    }

    private void RecordDuration(TaskEvent taskEvent, TagList tags, string outcome)
    {
        if (taskEvent.Duration is { } duration)
        {
            tags.Add("outcome", outcome);
            _duration.Record(duration.TotalSeconds, tags);
        }
    }

    /// <summary>Counts leases the reaper took back.</summary>
    public void LeasesExpired(int count)
    {
        if (count > 0)
        {
            _leasesExpired.Add(count);
        }
    }

    /// <summary>Records a backend call's round trip, measured from <paramref name="startTimestamp"/> (a
    /// <see cref="Stopwatch"/> timestamp) to now.</summary>
    public void BackendCall(string operation, long startTimestamp)
    {
        if (_backendDuration.Enabled)
        {
            _backendDuration.Record(Stopwatch.GetElapsedTime(startTimestamp).TotalSeconds, new KeyValuePair<string, object?>("operation", operation));
        }
    }

    private IEnumerable<Measurement<long>> ObserveDepth()
    {
        var snapshot = Current();
        foreach (var queue in snapshot.Queues)
        {
            foreach (var state in Enum.GetValues<TaskState>())
            {
                yield return new Measurement<long>(queue.Count(state),
                    new KeyValuePair<string, object?>("queue", queue.Name), new KeyValuePair<string, object?>("state", state.ToApiName()));
            }
        }
    }

    private IEnumerable<Measurement<double>> ObserveOldestAge()
    {
        var snapshot = Current();
        foreach (var queue in snapshot.Queues)
        {
            var age = snapshot.OldestReady.TryGetValue(queue.Name, out var readyAt) ? Math.Max(0, (snapshot.At - readyAt).TotalSeconds) : 0;
            yield return new Measurement<double>(age, new KeyValuePair<string, object?>("queue", queue.Name));
        }
    }

    private IEnumerable<Measurement<int>> ObservePaused()
    {
        foreach (var queue in Current().Queues)
        {
            yield return new Measurement<int>(queue.Paused ? 1 : 0, new KeyValuePair<string, object?>("queue", queue.Name));
        }
    }

    private IEnumerable<Measurement<int>> ObserveWorkers()
    {
        if (Current().WorkersAlive is { } alive)
        {
            yield return new Measurement<int>(alive);
        }
    }

    /// <summary>The backend's counts, read again when older than the refresh interval: a collection waits for that read
    /// (up to 2 s; past it, it reports the last counts), and collections that come meanwhile share it, so scrapes cost
    /// at most one set of backend queries per interval.</summary>
    private Snapshot Current()
    {
        var snapshot = _snapshot;
        if (_services is null || _time.GetUtcNow() - snapshot.At < _refreshInterval)
        {
            return snapshot;
        }
        Task refreshing;
        lock (_refreshGate)
        {
            refreshing = _refreshing ??= Task.Run(RefreshAsync);
        }
        try
        {
            refreshing.Wait(TimeSpan.FromSeconds(2));
        }
        catch (AggregateException)
        {
            // Logged by the refresh; the last counts stand.
        }
        return _snapshot;
    }

    private async Task RefreshAsync()
    {
        try
        {
            var backend = _services!.GetRequiredService<IConveyorBackend>();
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
            var queues = await backend.Store.GetQueuesAsync(timeout.Token).ConfigureAwait(false);
            var oldest = await backend.Store.GetOldestReadyAsync(timeout.Token).ConfigureAwait(false);
            var now = _time.GetUtcNow();
            var workers = await backend.Coordination.ListWorkersAsync(now - _aliveWindow, timeout.Token).ConfigureAwait(false);
            _snapshot = new Snapshot(now, queues, oldest, workers.Count);
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            LogRefreshFailed(ex);
            // Try again at the next interval, not at every collection, while the backend is down.
            _snapshot = _snapshot with { At = _time.GetUtcNow() };
        }
        finally
        {
            lock (_refreshGate)
            {
                _refreshing = null;
            }
        }
    }

    public void Dispose()
    {
        if (_ownsMeter)
        {
            _meter.Dispose();
        }
    }

    private sealed record Snapshot(DateTimeOffset At, IReadOnlyList<QueueStats> Queues, IReadOnlyDictionary<string, DateTimeOffset> OldestReady, int? WorkersAlive)
    {
        public static Snapshot Empty { get; } = new(DateTimeOffset.MinValue, [], new Dictionary<string, DateTimeOffset>(), null);
    }

    [LoggerMessage(70, LogLevel.Warning, "Reading queue depths for metrics failed; the gauges keep their last values")]
    private partial void LogRefreshFailed(Exception exception);
}
