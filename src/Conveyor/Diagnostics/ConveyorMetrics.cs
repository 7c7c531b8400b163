using System.Collections.Concurrent;
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

    private readonly ObservableCounter<long> _enqueued;
    private readonly ObservableCounter<long> _started;
    private readonly ObservableCounter<long> _succeeded;
    // The task counters count here, per task name and queue, and are read when collected: an increment is a lookup
    // (usually the thread's last pair, by reference) and an Interlocked add, where a Counter<long>.Add went through the
    // listener's tag lookup three times per task.
    private readonly ConcurrentDictionary<(string Task, string Queue), TaskCounts> _counts = new();
    [ThreadStatic]
    private static LastCounts? t_last;
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
        _enqueued = _meter.CreateObservableCounter(ConveyorMetricNames.TasksEnqueued, () => ObserveCounts(c => Volatile.Read(ref c.Enqueued)), "{task}", "Tasks stored by enqueues and manual retries.");
        _started = _meter.CreateObservableCounter(ConveyorMetricNames.TasksStarted, () => ObserveCounts(c => Volatile.Read(ref c.Started)), "{attempt}", "Attempts whose handler started.");
        _succeeded = _meter.CreateObservableCounter(ConveyorMetricNames.TasksSucceeded, () => ObserveCounts(c => Volatile.Read(ref c.Succeeded)), "{attempt}", "Attempts that succeeded.");
        _meter.CreateObservableCounter(ConveyorMetricNames.TasksFailed, () => ObserveCounts(c => Volatile.Read(ref c.Failed)), "{attempt}", "Attempts that failed (retried or dead).");
        _meter.CreateObservableCounter(ConveyorMetricNames.TasksRetried, () => ObserveCounts(c => Volatile.Read(ref c.Retried)), "{attempt}", "Failed attempts whose task runs again.");
        _meter.CreateObservableCounter(ConveyorMetricNames.TasksDead, () => ObserveCounts(c => Volatile.Read(ref c.Dead)), "{task}", "Tasks that went dead.");
        _meter.CreateObservableCounter(ConveyorMetricNames.TasksCancelled, () => ObserveCounts(c => Volatile.Read(ref c.Cancelled)), "{task}", "Tasks cancelled.");
        _meter.CreateObservableCounter(ConveyorMetricNames.TasksExpired, () => ObserveCounts(c => Volatile.Read(ref c.Expired)), "{task}", "Tasks that expired before they started.");
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

    /// <summary>When the backend's counts were last read, or a read last failed (<see cref="DateTimeOffset.MinValue"/>
    /// before the first): for tests that wait for a refresh.</summary>
    internal DateTimeOffset SnapshotAt => _snapshot.At;

    /// <summary>Whether a listener records backend round trips.</summary>
    public bool BackendEnabled => _backendDuration.Enabled;

    /// <summary>Records a task event on the counters and histograms.</summary>
    public void Record(TaskEvent taskEvent)
    {
        switch (taskEvent.Kind)
        {
            case TaskEventKind.Enqueued:
                Enqueued(taskEvent.Task, taskEvent.Queue);
                break;
            case TaskEventKind.Started:
                Started(taskEvent.Task, taskEvent.Queue, taskEvent.QueueWait);
                break;
            default:
                Ended(taskEvent.Kind, taskEvent.Task, taskEvent.Queue, taskEvent.Duration, taskEvent.Error is not null);
                break;
        }
    }

    /// <summary>A task stored: what an <see cref="TaskEventKind.Enqueued"/> event records, without building one.</summary>
    public void Enqueued(string task, string queue) => Interlocked.Increment(ref Counts(task, queue).Enqueued);

    /// <summary>An attempt's handler started, <paramref name="queueWait"/> after the task became ready.</summary>
    public void Started(string task, string queue, TimeSpan? queueWait)
    {
        Interlocked.Increment(ref Counts(task, queue).Started);
        if (queueWait is { } wait && _queueWait.Enabled)
        {
            _queueWait.Record(Math.Max(0, wait.TotalSeconds), new TagList { { "task", task }, { "queue", queue } });
        }
    }

    /// <summary>What an event of a task's end (or retry) records: <paramref name="kind"/>, the attempt's
    /// <paramref name="duration"/> when it ran, and whether it ended with an error.</summary>
    public void Ended(TaskEventKind kind, string task, string queue, TimeSpan? duration, bool hasError)
    {
        var counts = Counts(task, queue);
        switch (kind)
        {
            case TaskEventKind.Succeeded:
                Interlocked.Increment(ref counts.Succeeded);
                RecordDuration(task, queue, duration, "succeeded");
                break;
            case TaskEventKind.Retrying:
                // A snooze, or a task no handler here knows, goes back without an error and without spending an attempt.
                if (hasError && duration is not null)
                {
                    Interlocked.Increment(ref counts.Failed);
                    Interlocked.Increment(ref counts.Retried);
                    RecordDuration(task, queue, duration, "failed");
                }
                break;
            case TaskEventKind.Dead:
                Interlocked.Increment(ref counts.Failed);
                Interlocked.Increment(ref counts.Dead);
                RecordDuration(task, queue, duration, "failed");
                break;
            case TaskEventKind.Cancelled:
                Interlocked.Increment(ref counts.Cancelled);
                RecordDuration(task, queue, duration, "cancelled");
                break;
            case TaskEventKind.Expired:
                Interlocked.Increment(ref counts.Expired);
                break;
            default:
                break;
        }
    }

    private void RecordDuration(string task, string queue, TimeSpan? duration, string outcome)
    {
        if (duration is { } d && _duration.Enabled)
        {
            _duration.Record(d.TotalSeconds, new TagList { { "task", task }, { "queue", queue }, { "outcome", outcome } });
        }
    }

    private TaskCounts Counts(string task, string queue)
    {
        // Workers reuse the name strings of the messages they read, so the thread's last pair matches by reference.
        if (t_last is { } last && ReferenceEquals(last.Owner, this) && ReferenceEquals(last.Task, task) && ReferenceEquals(last.Queue, queue))
        {
            return last.Counts;
        }
        var counts = _counts.GetOrAdd((task, queue), static _ => new TaskCounts());
        t_last = new LastCounts(this, task, queue, counts);
        return counts;
    }

    private IEnumerable<Measurement<long>> ObserveCounts(Func<TaskCounts, long> read)
    {
        foreach (var (key, counts) in _counts)
        {
            yield return new Measurement<long>(read(counts),
                new KeyValuePair<string, object?>("task", key.Task), new KeyValuePair<string, object?>("queue", key.Queue));
        }
    }

    private sealed class TaskCounts
    {
        public long Enqueued;
        public long Started;
        public long Succeeded;
        public long Failed;
        public long Retried;
        public long Dead;
        public long Cancelled;
        public long Expired;
    }

    private sealed record LastCounts(ConveyorMetrics Owner, string Task, string Queue, TaskCounts Counts);

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
        catch (ObjectDisposedException ex) when (ex.ObjectName == nameof(IServiceProvider))
        {
            // The host's services are being disposed: a meter provider's last collection (at its own disposal) reads the
            // gauges after the services they read are gone. Nothing failed; the last counts stand. (A backend disposed
            // while the host runs is a failure, logged below.)
            _snapshot = _snapshot with { At = _time.GetUtcNow() };
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
